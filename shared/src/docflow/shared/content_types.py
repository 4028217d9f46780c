"""What a file is, judged by its bytes (magic numbers), never by its name alone.

The gateway rejects what no stage can read (415) and records the sniffed type; the
extractor dispatches on that recorded type. The file name only tells Markdown from
plain text, which no magic number can.
"""

from enum import StrEnum

import filetype

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


def looks_like_text(head: bytes) -> bool:
    # The head may end inside a multi-byte character: `partial`.
    return decode_text(head, partial=True) is not None


def sniff(head: bytes, filename: str = "") -> ContentType | None:
    """The supported type of a file from its first bytes, or None if unsupported."""
    kind = filetype.guess(head)
    if kind is not None:
        try:
            return ContentType(kind.mime)
        except ValueError:
            return None
    if head.startswith(b"PK\x03\x04"):
        return None  # a zip that is not a DOCX (filetype checks for word/ entries)
    if looks_like_text(head):
        return ContentType.MARKDOWN if filename.lower().endswith(_MARKDOWN_SUFFIXES) else ContentType.TEXT
    return None
