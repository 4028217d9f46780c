"""Hostile and broken documents made on the fly: what the bad-input tests upload.

Each is small on the wire and built to hurt a naive reader: inflate beyond memory,
expand entities without bound, decode billions of pixels, or simply be damaged.
"""

import io
import zipfile
import zlib

from PIL import Image
from pypdf import PdfReader, PdfWriter

from docflow.devstack import samples

MiB = 1024 * 1024


def rewritten_docx(document_xml: bytes | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """A real DOCX with its word/document.xml replaced and/or entries added."""
    original = zipfile.ZipFile(io.BytesIO(samples.docx(["A harmless paragraph."])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as rewritten:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "word/document.xml" and document_xml is not None:
                data = document_xml
            rewritten.writestr(item.filename, data)
        for name, data in (extra or {}).items():
            rewritten.writestr(name, data)
    return out.getvalue()


def zip_bomb_docx(inflated_bytes: int = 400 * MiB) -> bytes:
    """A DOCX whose main part inflates to `inflated_bytes` of XML whitespace (~1000:1)."""
    document = zipfile.ZipFile(io.BytesIO(samples.docx(["bomb"]))).read("word/document.xml")
    head, tail = document.split(b"<w:body>", 1)
    return rewritten_docx(document_xml=head + b"<w:body>" + b" " * inflated_bytes + tail)


def entity_bomb_docx() -> bytes:
    """"Billion laughs": ten nested entities, each ten of the one before (10^9 "lol"s)."""
    entities = b"".join(b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10))
    document = (b'<?xml version="1.0"?>\n<!DOCTYPE w:document [\n<!ENTITY lol0 "lol">\n' + entities + b"]>\n"
                b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                b"<w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>")
    return rewritten_docx(document_xml=document)


def truncated_docx() -> bytes:
    """A DOCX cut short: still a zip (and a DOCX) by its first bytes, unreadable after."""
    return samples.docx(["Cut short. " * 300])[:3000]


def flate_bomb_pdf(inflated_bytes: int = 200 * MiB) -> bytes:
    """A one-page PDF whose content stream inflates to `inflated_bytes`."""
    stream = zlib.compress(b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n" + b" " * inflated_bytes, 9)
    return _one_page_pdf(b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>",
                         b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")


def pixel_bomb_pdf(side: int = 10_000) -> bytes:
    """A one-page 'scan' without a text layer whose image is side x side pixels: 100 Mpx
    (over Pillow's 89.5 Mpx limit) of 1-bit white in ~15 KB."""
    samples_ = zlib.compress(b"\xff" * ((side + 7) // 8 * side), 9)
    content = b"q 612 0 0 792 0 0 cm /Im0 Do Q"
    return _one_page_pdf(
        b"<< /XObject << /Im0 5 0 R >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
        b"/BitsPerComponent 1 /Filter /FlateDecode /Length %d >>\nstream\n" % (side, side, len(samples_))
        + samples_ + b"\nendstream",
    )


def _one_page_pdf(resources: bytes, contents: bytes, *more: bytes) -> bytes:
    """A one-page PDF: the page's resources dictionary, its content stream (object 4) and
    any further objects (numbered from 5)."""
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources " + resources + b" >>",
        contents,
        *more,
    ])


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1, the first the catalog), with its xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def encrypted_pdf(password: str = "s3cret") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(samples.pdf(["Confidential figures."]))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def corrupt_pdf() -> bytes:
    """A PDF header, then noise: no objects, no cross-reference table."""
    return b"%PDF-1.7\n" + bytes((i * 7919 + 13) % 256 for i in range(4096))


def truncated_pdf() -> bytes:
    return samples.pdf(["This file will be cut in half."])[:300]


def pixel_bomb_png(side: int = 10_000) -> bytes:
    """A blank PNG of side x side pixels: 100 Mpx (over Pillow's 89.5 Mpx limit) in ~25 KB."""
    out = io.BytesIO()
    Image.new("1", (side, side), 1).save(out, "PNG")
    return out.getvalue()


def undecodable_text() -> bytes:
    """Text for its first 64 KiB (what the gateway sniffs), binary after."""
    return b"Plain words to begin with. " * 3000 + bytes(range(256)) * 200
