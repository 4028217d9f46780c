"""What a file is, judged by its bytes, never by its name alone.

The gateway rejects what no stage can read (415) and records the sniffed type; the
extractor dispatches on that recorded type. The file name only tells Markdown from
plain text, which no byte can.

A magic number is a guess: two bytes "BM" open a BMP image and also the abstract
"BMAL1 and CLOCK…"; "%PDF" opens a PDF and also a note about PDFs. So:

1. A supported binary format whose *structure* checks out is that format (a PNG's
   IHDR chunk and its CRC, a JPEG's first marker segment, a TIFF's first IFD, a PDF's
   header line and first object, a DOCX's zip entries).
2. Otherwise a file that decodes as text is text (`docflow.shared.text_encoding`),
   whatever its first bytes look like: GIF8, MZ, ID3, OggS, {\\rtf, SQLite format 3...
3. Otherwise a file that is not text but opens with a supported format's magic number
   is taken as that format, damaged: its reader then fails it with a precise code
   (corrupt_file) rather than a 415.
4. Anything else (images and archives of other kinds, executables) is unsupported.

Everything here is pure Python on the first 64 KiB: the gateway never loads a
stage's decoders (Pillow, pypdf) to judge an upload.
"""

import re
import struct
import zlib
from collections.abc import Callable
from enum import StrEnum

from filetype.types.document import Docx

from docflow.shared.text_encoding import decode_text

SNIFF_BYTES = 64 * 1024


class ContentType(StrEnum):
    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    PNG = "image/png"
    JPEG = "image/jpeg"
    TIFF = "image/tiff"
    TEXT = "text/plain"
    MARKDOWN = "text/markdown"


IMAGE_TYPES = frozenset({ContentType.PNG, ContentType.JPEG, ContentType.TIFF})
TEXT_TYPES = frozenset({ContentType.TEXT, ContentType.MARKDOWN})
_MARKDOWN_SUFFIXES = (".md", ".markdown")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")
# The header line (ISO 32000: "%PDF-1.7", "%PDF-2.0") ends the line.
_PDF_HEADER = re.compile(rb"%PDF-[12]\.\d[\r\n]")
# The first indirect object, a dictionary ("1 0 obj <<": the catalog, the page tree,
# a linearisation or xref-stream dictionary), follows the header and its optional
# binary comment line.
_PDF_FIRST_OBJECT = re.compile(
    rb"\A%PDF-[12]\.\d[ \t]*\r?\n?(?:%[^\r\n]*\r?\n?|\s)*\d{1,10}\s+\d{1,5}\s+obj\s*<<")
_DOCX = Docx()  # filetype's check of the zip's first entries: [Content_Types].xml, word/...


def _png(head: bytes) -> bool:
    # Signature, then the IHDR chunk: length 13, its type, and a CRC over both.
    if not head.startswith(_PNG_SIGNATURE) or len(head) < 33:
        return False
    length, chunk_type = struct.unpack(">I4s", head[8:16])
    (crc,) = struct.unpack(">I", head[29:33])
    return length == 13 and chunk_type == b"IHDR" and zlib.crc32(head[12:29]) == crc


def _jpeg(head: bytes) -> bool:
    # Start of image, then a marker segment (APPn, DQT, SOFn, DHT, COM...) whose
    # length covers at least its own two bytes and fits before the next marker.
    if not head.startswith(_JPEG_SOI):
        return False
    at = 3
    while at < len(head) and head[at] == 0xFF:
        at += 1  # fill bytes before a marker are allowed
    if at + 3 > len(head):
        return False
    marker = head[at]
    (length,) = struct.unpack(">H", head[at + 1:at + 3])
    if not (0xC0 <= marker <= 0xFE) or marker in (0xD8, 0xD9) or length < 2:
        return False
    after = at + 1 + length
    return after >= len(head) or head[after] == 0xFF


def _tiff(head: bytes) -> bool:
    # Byte order, 42, the first IFD's offset: past the header, and when it lies in
    # the head, a plausible entry count.
    if not head.startswith(_TIFF_SIGNATURES) or len(head) < 8:
        return False
    order = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", head[4:8])
    if offset < 8:
        return False
    if offset + 2 > len(head):
        return True  # the IFD lies beyond what we sniff (a TIFF may put it at the end)
    (entries,) = struct.unpack(order + "H", head[offset:offset + 2])
    return 0 < entries < 4096


def _pdf(head: bytes) -> bool:
    return _PDF_FIRST_OBJECT.match(head) is not None


def _docx(head: bytes) -> bool:
    return bool(_DOCX.match(head))


# Each supported binary format: (its structure checks out, it opens with its magic number).
_BINARY_FORMATS: dict[ContentType, tuple[Callable[[bytes], bool], Callable[[bytes], bool]]] = {
    ContentType.PDF: (_pdf, lambda head: _PDF_HEADER.match(head) is not None),
    ContentType.PNG: (_png, lambda head: head.startswith(_PNG_SIGNATURE)),
    ContentType.JPEG: (_jpeg, lambda head: head.startswith(_JPEG_SOI)),
    ContentType.TIFF: (_tiff, lambda head: head.startswith(_TIFF_SIGNATURES)),
    # A zip that is not a DOCX is unsupported: no weaker form to fall back on.
    ContentType.DOCX: (_docx, _docx),
}


def looks_like_text(head: bytes) -> bool:
    # The head may end inside a multi-byte character: `partial`.
    return decode_text(head, partial=True) is not None


# A document submitted as a URL shows this content type until the extractor has fetched
# it and judged its bytes (RFC 2483's type for a list of URLs: so far the document is
# one URL); the fetch then records the judged type.
URL_PENDING = "text/uri-list"
# Only fetched documents are judged HTML and reduced to their main text (an uploaded
# .html file stays text/plain, as it always was): `looks_like_html`.
HTML = "text/html"
# What may precede an HTML document's first tag: a BOM, whitespace, an XML declaration,
# comments. Then one of the tags only HTML opens with.
_HTML_START = re.compile(
    r"\A\ufeff?(?:\s|<\?xml[^>]*>|<!--.*?-->)*<(?:!doctype\s+html|html|head|body)[\s>/]",
    re.IGNORECASE | re.DOTALL)


def looks_like_html(head: bytes) -> bool:
    """Whether text opens as an HTML document does (doctype, <html>, <head> or <body>
    first): judged by content, so a note that merely mentions <html> stays text."""
    decoded = decode_text(head, partial=True)
    return decoded is not None and _HTML_START.match(decoded.text) is not None


def sniff(head: bytes, filename: str = "") -> ContentType | None:
    """The supported type of a file from its first bytes, or None if unsupported."""
    for content_type, (structure_checks_out, _) in _BINARY_FORMATS.items():
        if structure_checks_out(head):
            return content_type
    if looks_like_text(head):
        return ContentType.MARKDOWN if filename.lower().endswith(_MARKDOWN_SUFFIXES) else ContentType.TEXT
    for content_type, (_, has_magic_number) in _BINARY_FORMATS.items():
        if has_magic_number(head):
            return content_type
    return None
