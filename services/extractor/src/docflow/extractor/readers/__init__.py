"""From an original's bytes to its pages' text: one reader per format.

The extractor dispatches on the content type the gateway sniffed from the file's
bytes and recorded on the message (for a URL, the type the fetch judged from the
fetched bytes), never on the file name.
"""

from collections.abc import Callable

from docflow.extractor.pages import PageText, Progress
from docflow.extractor.readers.html import read_html
from docflow.extractor.readers.image import read_image
from docflow.extractor.readers.pdf import read_pdf
from docflow.extractor.readers.plain_text import read_text
from docflow.extractor.readers.word import read_docx
from docflow.shared.content_types import HTML, ContentType
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings

Reader = Callable[[bytes, Settings, Progress], list[PageText]]
# What an empty result means, said truthfully for each kind of input.
NO_TEXT = "the document contains no text, and OCR found none in its images"  # PDF and DOCX: both OCR pictures
NO_TEXT_IN_IMAGE = "OCR found no text in the image"
NO_TEXT_IN_TEXT_FILE = "the file contains no text (only whitespace)"

READERS: dict[str, Reader] = {
    ContentType.PDF: read_pdf,
    ContentType.DOCX: read_docx,
    ContentType.PNG: read_image,
    ContentType.JPEG: read_image,
    ContentType.TIFF: read_image,
    ContentType.TEXT: read_text,
    ContentType.MARKDOWN: read_text,
    HTML: read_html,  # fetched URLs only: an upload is never judged HTML
}


def read_document(content_type: str, data: bytes, settings: Settings,
                  progress: Progress) -> list[PageText]:
    """The pages of a document; raises `PermanentError` for anything it cannot read."""
    reader = READERS.get(content_type)  # a StrEnum key matches its plain string
    if reader is None:
        raise PermanentError(ErrorCode.UNSUPPORTED_TYPE, f"no reader for content type {content_type!r}")
    return require_text(reader(data, settings, progress), _NO_TEXT_BY_READER.get(reader, NO_TEXT))


def require_text(pages: list[PageText], reason: str = NO_TEXT) -> list[PageText]:
    """The pages, unless not one of them holds any text (`PermanentError` with `reason`)."""
    if not any(page.text.strip() for page in pages):
        raise PermanentError(ErrorCode.EMPTY_DOCUMENT, reason)
    return pages


_NO_TEXT_BY_READER: dict[Reader, str] = {read_image: NO_TEXT_IN_IMAGE, read_text: NO_TEXT_IN_TEXT_FILE}
