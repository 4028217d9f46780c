"""PDF pages come out with their text and page number; bad PDFs fail with a clear code."""

import io
import zlib

import pytest
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfWriter

from docflow.extractor.readers.pdf import read_pdf
from docflow.shared.errors import ErrorCode, PermanentError

SCANNED_SENTENCE = "The orchestra rehearsed the violin concerto twice."


def text_pdf(page_texts: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in page_texts:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def picture_of(text: str) -> Image.Image:
    image = Image.new("L", (1400, 200), 255)
    ImageDraw.Draw(image).text((40, 70), text, font=ImageFont.load_default(size=40), fill=0)
    return image


def scanned_pdf(page_texts: list[str]) -> bytes:
    """Image-only pages, as a scanner produces them: no text layer at all."""
    pictures = [picture_of(text) for text in page_texts]
    out = io.BytesIO()
    pictures[0].save(out, format="PDF", save_all=True, append_images=pictures[1:], resolution=150)
    return out.getvalue()


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def handmade_pdf(objects: list[bytes]) -> bytes:
    """A PDF written object by object (1 = catalog), for structures no writer produces."""
    out, offsets = b"%PDF-1.7\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def one_page_pdf(content: bytes, content_filter: bytes, resources: bytes, extra: bytes = b"") -> bytes:
    """A one-page PDF: its content stream (object 4), resources, and one extra object (5)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R /Resources %s >>" % resources,
        b"<< /Length %d %s >>\nstream\n" % (len(content), content_filter) + content + b"\nendstream",
    ]
    return handmade_pdf(objects + ([extra] if extra else []))


def test_text_pdf_pages_keep_their_text_and_numbers(settings, record_progress, progress_calls):
    pages = read_pdf(text_pdf(["First page about apples.", "Second page about pears.",
                               "Third page about plums."]), settings, record_progress)
    assert [p.page for p in pages] == [1, 2, 3]
    assert "apples" in pages[0].text and "pears" in pages[1].text and "plums" in pages[2].text
    assert progress_calls == [(1, 3), (2, 3), (3, 3)]


def test_scanned_pdf_is_read_by_ocr(settings, record_progress):
    pages = read_pdf(scanned_pdf([SCANNED_SENTENCE]), settings, record_progress)
    assert [p.page for p in pages] == [1]
    assert SCANNED_SENTENCE in " ".join(pages[0].text.split())


def test_only_pages_without_a_text_layer_are_ocrd(settings, record_progress):
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "A typed cover page.")
    pdf.add_page()
    pdf.image(picture_of(SCANNED_SENTENCE), x=10, y=10, w=190)
    pages = read_pdf(bytes(pdf.output()), settings, record_progress)
    assert pages[0].text.strip() == "A typed cover page."
    assert SCANNED_SENTENCE in " ".join(pages[1].text.split())


def test_a_blank_page_stays_a_page(settings, record_progress):
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, "Only the first page has text.")
    pdf.add_page()
    pages = read_pdf(bytes(pdf.output()), settings, record_progress)
    assert [(p.page, p.text.strip()) for p in pages] == [(1, "Only the first page has text."), (2, "")]


def test_pdf_with_a_user_password_is_encrypted_file(settings, record_progress):
    locked = encrypted(text_pdf(["Secret plans."]), user_password="hunter2")
    with pytest.raises(PermanentError) as failure:
        read_pdf(locked, settings, record_progress)
    assert failure.value.code == ErrorCode.ENCRYPTED_FILE


def test_pdf_encrypted_with_an_empty_user_password_is_read(settings, record_progress):
    restricted = encrypted(text_pdf(["Printing is restricted, reading is not."]), user_password="")
    pages = read_pdf(restricted, settings, record_progress)
    assert "reading is not" in pages[0].text


@pytest.mark.parametrize("damage", [
    pytest.param(lambda pdf: pdf[:300], id="truncated"),
    pytest.param(lambda pdf: pdf[:len(pdf) // 2], id="half"),
    pytest.param(lambda pdf: b"%PDF-1.7\nnothing that follows is a PDF", id="junk-after-header"),
    pytest.param(lambda pdf: b"", id="empty"),
])
def test_damaged_pdf_is_corrupt_file(settings, record_progress, damage):
    with pytest.raises(PermanentError) as failure:
        read_pdf(damage(text_pdf(["This file will be damaged."])), settings, record_progress)
    assert failure.value.code == ErrorCode.CORRUPT_FILE


def test_more_pages_than_allowed_is_too_large(settings, record_progress):
    limited = settings.model_copy(update={"max_pdf_pages": 2})
    with pytest.raises(PermanentError) as failure:
        read_pdf(text_pdf(["one", "two", "three"]), limited, record_progress)
    assert failure.value.code == ErrorCode.TOO_LARGE


def test_decompression_bomb_hits_pypdfs_limit_and_is_too_large(settings, record_progress):
    # 80 MB of zeros squeezed into ~80 kB: above pypdf's default 75 MB output limit.
    compressor = zlib.compressobj(9)
    bomb = b"".join([compressor.compress(bytes(1_000_000)) for _ in range(80)] + [compressor.flush()])
    with pytest.raises(PermanentError) as failure:
        read_pdf(one_page_pdf(bomb, b"/Filter /FlateDecode", b"<< /Font << /F1 5 0 R >> >>",
                              b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"),
                 settings, record_progress)
    assert failure.value.code == ErrorCode.TOO_LARGE
    assert "limit" in failure.value.message.lower()


def test_an_undecodable_image_is_skipped_not_fatal(settings, record_progress):
    junk = b"these bytes are not a JPEG"
    broken_image = (b"<< /Type /XObject /Subtype /Image /Width 10 /Height 10 /ColorSpace /DeviceGray"
                    b" /BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n" % len(junk)
                    + junk + b"\nendstream")
    pdf = one_page_pdf(b"q 100 0 0 100 0 0 cm /Im1 Do Q", b"", b"<< /XObject << /Im1 5 0 R >> >>",
                       broken_image)
    assert [(p.page, p.text) for p in read_pdf(pdf, settings, record_progress)] == [(1, "")]
