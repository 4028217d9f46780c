import io

import pytest
from PIL import Image

from docflow.devstack import hostile, samples
from docflow.shared.content_types import SNIFF_BYTES, ContentType, looks_like_html, sniff


def image_bytes(fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, fmt)
    return out.getvalue()


def png_bytes() -> bytes:
    return image_bytes("PNG")


@pytest.mark.parametrize(("head", "name", "expected"), [
    (samples.pdf(["A real PDF."])[:SNIFF_BYTES], "x.bin", ContentType.PDF),
    ("Grüße aus Köln\n".encode(), "notes.txt", ContentType.TEXT),
    (b"# Title\n\nbody", "README.md", ContentType.MARKDOWN),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "report.pdf", None),
    (b"PK\x03\x04" + b"\x00" * 40, "fake.docx", None),
])
def test_type_is_judged_by_content(head, name, expected):
    assert sniff(head, name) == expected


def test_images_are_recognised_whatever_their_name():
    assert sniff(png_bytes(), "photo.txt") == ContentType.PNG


# Text whose first bytes are some binary format's magic number (issue 16: real
# abstracts beginning "BMP receptor…" were refused as BMP images).
WEAK_MAGIC_TEXTS = [
    "BMP receptor signalling patterns the dorsal-ventral axis of the embryo.",
    "BMAL1 and CLOCK form a heterodimer that drives circadian transcription.",
    "GIF89a is the version of the format that added animation.",
    "GIF87a came first.",
    "MZ are the initials of Mark Zbikowski.",
    "ID3 tags hold a song's title and artist.",
    "OggS marks every page of an Ogg stream.",
    "fLaC opens a FLAC file; lossless audio.",
    "{\\rtf1\\ansi Hello from a rich text file}",
    "%!PS-Adobe-3.0 is the first line of a PostScript program.",
    "BZh9 followed by the block magic is bzip2.",
    "8BPS is Photoshop's signature.",
    "MSCF is a cabinet file.",
    "SQLite format 3 is the database's header string.",
    "%PDF-1.7 is the version most PDFs in the archive declare.",
    "%PDF",
    "%PDF-1.4\n1 0 obj is how an object starts, but this is a note about it.",
    "II* looks like TIFF's byte order mark.",
    "RIFF headers wrap WAVE and AVI.",
]


@pytest.mark.parametrize("text", WEAK_MAGIC_TEXTS)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16"])
def test_text_opening_with_a_magic_number_is_text(text, encoding):
    assert sniff(text.encode(encoding), "abstract.txt") == ContentType.TEXT


@pytest.mark.parametrize(("make", "expected"), [
    (samples.pdf, ContentType.PDF),
    (lambda: samples.scanned_pdf(["A scanned page"]), ContentType.PDF),
    (lambda: image_bytes("PNG"), ContentType.PNG),
    (lambda: image_bytes("JPEG"), ContentType.JPEG),
    (lambda: image_bytes("TIFF"), ContentType.TIFF),
    (lambda: samples.docx(["A paragraph."]), ContentType.DOCX),
])
def test_real_files_still_sniff_as_themselves(make, expected):
    data = make(["A page."]) if make is samples.pdf else make()
    assert sniff(data[:SNIFF_BYTES], "upload.txt") == expected


@pytest.mark.parametrize(("data", "expected"), [
    # Damaged files of a supported format that are not text: accepted as that format,
    # so the reader fails them with corrupt_file rather than a 415.
    (hostile.corrupt_pdf(), ContentType.PDF),
    (hostile.truncated_pdf(), ContentType.PDF),
    (hostile.truncated_docx()[:SNIFF_BYTES], ContentType.DOCX),
    (png_bytes()[:20], ContentType.PNG),
    # A fake or truncated header that decodes as text is text.
    (b"\x89PNG", ContentType.TEXT),
    (b"%PDF-1.7\n...", ContentType.TEXT),
    # Binary formats nobody reads here stay unsupported.
    (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04", None),
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00", None),
    (b"BM" + bytes([0x36, 0x10, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 0x28, 0, 0, 0]), None),
    (b"SQLite format 3\x00" + bytes(range(256)), None),
])
def test_damaged_fake_and_unsupported_files(data, expected):
    assert sniff(data, "upload.bin") == expected


@pytest.mark.parametrize("head, html", [
    (b"<!DOCTYPE html>\n<html><body>x</body></html>", True),
    (b"\xef\xbb\xbf  <?xml version='1.0'?>\n<!-- generated -->\n<html lang='en'>", True),
    (b"<HEAD><title>t</title></HEAD>", True),
    ("<!doctype html><p>caf\u00e9</p>".encode("utf-16"), True),
    (b"A note about the <html> element and <body> tags.", False),
    (b"<htmlfoo>not a tag of HTML</htmlfoo>", False),
    (b"# Markdown\n\n<html> in a code span", False),
    (b"\x89PNG\r\n\x1a\n<html>", False),
])
def test_fetched_html_is_judged_by_how_its_text_opens(head, html):
    assert looks_like_html(head) is html
