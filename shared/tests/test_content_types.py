import io

import pytest
from PIL import Image

from docflow.shared.content_types import ContentType, sniff


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(("head", "name", "expected"), [
    (b"%PDF-1.7\n...", "x.bin", ContentType.PDF),
    ("Grüße aus Köln\n".encode(), "notes.txt", ContentType.TEXT),
    (b"# Title\n\nbody", "README.md", ContentType.MARKDOWN),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "report.pdf", None),
    (b"PK\x03\x04" + b"\x00" * 40, "fake.docx", None),
])
def test_type_is_judged_by_content(head, name, expected):
    assert sniff(head, name) == expected


def test_images_are_recognised_whatever_their_name():
    assert sniff(png_bytes(), "photo.txt") == ContentType.PNG
