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
