"""DOCX paragraphs and tables come out in document order; anything else is corrupt_file."""

import io
import zipfile

import docx
import pytest

from docflow.extractor.readers.word import read_docx
from docflow.shared.errors import ErrorCode, PermanentError


def saved(document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def bakery_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Bakery price list", level=1)
    document.add_paragraph("Our bakery sells sourdough loaves made with rye flour.")
    table = document.add_table(rows=3, cols=2)
    prices = [["Bread", "Price"], ["Rye sourdough", "4.50 EUR"], ["Baguette", "2.10 EUR"]]
    for row, cells in zip(table.rows, prices, strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_paragraph("Prices include VAT.")
    return saved(document)


def test_paragraphs_and_tables_in_document_order(settings, record_progress):
    [page] = read_docx(bakery_docx(), settings, record_progress)
    assert page.page is None
    assert page.text.split("\n\n") == [
        "Bakery price list",
        "Our bakery sells sourdough loaves made with rye flour.",
        "Bread | Price\nRye sourdough | 4.50 EUR\nBaguette | 2.10 EUR",
        "Prices include VAT.",
    ]


def test_merged_cells_are_named_once_and_empty_paragraphs_dropped(settings, record_progress):
    document = docx.Document()
    document.add_paragraph("")
    table = document.add_table(rows=2, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 2))
    merged.text = "Quarterly totals"
    for cell, text in zip(table.rows[1].cells, ["Q1", "Q2", "Q3"], strict=True):
        cell.text = text
    [page] = read_docx(saved(document), settings, record_progress)
    assert page.text == "Quarterly totals\nQ1 | Q2 | Q3"


def test_a_file_that_is_not_a_zip_is_corrupt_file(settings, record_progress):
    with pytest.raises(PermanentError) as failure:
        read_docx(b"This is plain text with a .docx name.", settings, record_progress)
    assert failure.value.code == ErrorCode.CORRUPT_FILE


def test_a_zip_that_is_not_a_docx_is_corrupt_file(settings, record_progress):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "just a zip")
    with pytest.raises(PermanentError) as failure:
        read_docx(out.getvalue(), settings, record_progress)
    assert failure.value.code == ErrorCode.CORRUPT_FILE


def test_a_docx_with_damaged_xml_is_corrupt_file(settings, record_progress):
    source = zipfile.ZipFile(io.BytesIO(bakery_docx()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for item in source.infolist():
            content = source.read(item.filename)
            archive.writestr(item, content[:200] if item.filename == "word/document.xml" else content)
    with pytest.raises(PermanentError) as failure:
        read_docx(out.getvalue(), settings, record_progress)
    assert failure.value.code == ErrorCode.CORRUPT_FILE


def test_a_truncated_docx_is_corrupt_file(settings, record_progress):
    data = bakery_docx()
    with pytest.raises(PermanentError) as failure:
        read_docx(data[:len(data) // 2], settings, record_progress)
    assert failure.value.code == ErrorCode.CORRUPT_FILE


# --- pictures: a scanned page pasted into Word is read by OCR --------------------------

SCANNED = "Volcanic soil makes the vineyards rich in minerals."
SECOND_SCAN = "Glaciers in the Alps have lost a third of their ice."


def png_of(text: str, size: tuple[int, int] = (1400, 200)) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", size, "white")
    ImageDraw.Draw(image).text((40, 70), text, font=ImageFont.load_default(size=40), fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def words(text: str) -> str:
    return " ".join(text.split())


def test_a_docx_of_scanned_pictures_only_is_read_by_ocr_in_document_order(settings, record_progress):
    """Its pictures were never OCR'd, and the document failed empty_document saying
    "OCR found none in its images"."""
    document = docx.Document()
    document.add_picture(io.BytesIO(png_of(SCANNED)))
    document.add_picture(io.BytesIO(png_of(SECOND_SCAN)))
    [page] = read_docx(saved(document), settings, record_progress)
    text = words(page.text)
    assert SCANNED in text and SECOND_SCAN in text
    assert text.index(SCANNED) < text.index(SECOND_SCAN)


def test_a_pictures_text_stands_where_the_picture_does(settings, record_progress):
    document = docx.Document()
    document.add_paragraph("Before the figure.")
    document.add_picture(io.BytesIO(png_of(SCANNED)))
    document.add_paragraph("After the figure.")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Scan:"
    table.cell(0, 1).paragraphs[0].add_run().add_picture(io.BytesIO(png_of(SECOND_SCAN)))
    [page] = read_docx(saved(document), settings, record_progress)
    blocks = page.text.split("\n\n")
    assert blocks[0] == "Before the figure."
    assert SCANNED in words(blocks[1]) and blocks[2] == "After the figure."
    assert blocks[3].startswith("Scan: | ") and SECOND_SCAN in words(blocks[3])


def test_a_picture_shown_twice_is_read_once(settings, record_progress, monkeypatch):
    from docflow.extractor.readers import word

    calls = []
    real = word.ocr_image
    monkeypatch.setattr(word, "ocr_image", lambda image, languages: calls.append(1) or real(image, languages))
    document = docx.Document()
    picture = png_of(SCANNED)
    document.add_picture(io.BytesIO(picture))
    document.add_picture(io.BytesIO(picture))  # python-docx stores one image part for both
    [page] = read_docx(saved(document), settings, record_progress)
    assert len(calls) == 1 and words(page.text).count(SCANNED) == 2


def test_a_picture_over_the_pixel_limit_is_too_large_before_it_is_decoded(settings, record_progress, monkeypatch):
    from PIL import Image

    document = docx.Document()
    document.add_picture(io.BytesIO(png_of(SCANNED)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1400 * 200 - 1)
    with pytest.raises(PermanentError) as failure:
        read_docx(saved(document), settings, record_progress)
    assert failure.value.code == ErrorCode.TOO_LARGE


def test_a_picture_that_cannot_be_decoded_is_skipped_and_the_text_kept(settings, record_progress):
    document = docx.Document()
    document.add_paragraph("The text around a broken picture.")
    document.add_picture(io.BytesIO(png_of(SCANNED)))
    data = saved(document)
    # Break the stored picture, keeping the zip valid: its PNG header stays, its data goes.
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as broken:
        for item in source.infolist():
            content = source.read(item)
            broken.writestr(item, content[:40] if item.filename.startswith("word/media/") else content)
    [page] = read_docx(out.getvalue(), settings, record_progress)
    assert page.text == "The text around a broken picture."
