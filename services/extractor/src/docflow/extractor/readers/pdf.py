"""PDF: the text layer of each page, OCR of the page's images where it has none.

pypdf has had decompression-bomb and infinite-loop CVEs, so its version is pinned
recent and its default limits (pypdf.Configuration) are kept; hitting one raises
`LimitReachedError`, which we report as `too_large`. Every task also runs under a
time limit. An image to OCR is held to the same pixel limit as an uploaded image
(Pillow's `MAX_IMAGE_PIXELS`), checked on the size it declares before pypdf decodes
it: pypdf builds the picture from the raw samples, past Pillow's own bomb check.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO

import structlog
from PIL import Image
from pypdf import PageObject, PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

from docflow.extractor.failures import NOT_THE_INPUTS_FAULT
from docflow.extractor.ocr import ocr_image
from docflow.extractor.pages import PageText, Progress
from docflow.shared import metrics
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings

log = structlog.get_logger(__name__)

# A missing optional decoder (jbig2dec, brotli, cryptography) is the worker image's
# fault: left uncaught it fails the task as `internal_error` and is dead-lettered, so
# the document can be replayed once the image is fixed.
_NOT_THE_PDFS_FAULT = (*NOT_THE_INPUTS_FAULT, DependencyError)


def read_pdf(data: bytes, settings: Settings, progress: Progress) -> list[PageText]:
    reader, total = open_pdf(data, settings)
    return read_pdf_pages(reader, settings, 1, total, progress)


def open_pdf(data: bytes, settings: Settings) -> tuple[PdfReader, int]:
    """A reader of the PDF and its page count. pypdf parses lazily: this reads the
    cross-reference table and the page tree, not the pages' contents."""
    with _pdf_errors():
        reader = PdfReader(BytesIO(data))  # lenient (strict=False): real PDFs are often slightly broken
        _decrypt_with_empty_password(reader)
        total = len(reader.pages)
    if total > settings.max_pdf_pages:
        raise PermanentError(ErrorCode.TOO_LARGE,
                             f"the PDF has {total} pages; the limit is {settings.max_pdf_pages}")
    return reader, total


def read_pdf_pages(reader: PdfReader, settings: Settings, first: int, last: int,
                   progress: Progress) -> list[PageText]:
    """Pages `first`..`last` (1-based, inclusive); `progress` counts within this range.

    Only these pages' contents are parsed, so a range of a big PDF costs memory in
    proportion to the range (the fan-out relies on it).
    """
    pages = []
    for number in range(first, last + 1):
        with _pdf_errors():
            text = _page_text(reader.pages[number - 1], settings.ocr_languages)
        pages.append(PageText(page=number, text=text))
        progress(number - first + 1, last - first + 1)
    return pages


def _decrypt_with_empty_password(reader: PdfReader) -> None:
    """Many PDFs are encrypted only to restrict printing or editing, with an empty
    user password; those open. Anything needing a real password cannot be read."""
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise PermanentError(ErrorCode.ENCRYPTED_FILE, "the PDF is protected by a password")


def _page_text(page: PageObject, ocr_languages: str) -> str:
    text = page.extract_text() or ""
    if text.strip():
        return text
    # No text layer: most likely a scan, whose text is in its images.
    metrics.PAGES_OCR.labels("pdf").inc()
    return _ocr_embedded_images(page, ocr_languages)


def _ocr_embedded_images(page: PageObject, languages: str) -> str:
    texts = []
    for name in page.images.keys():
        pixels = _declared_pixels(page, name)
        if pixels > Image.MAX_IMAGE_PIXELS:
            raise PermanentError(ErrorCode.TOO_LARGE,
                                 f"a page's image declares {pixels} pixels, more than the "
                                 f"{Image.MAX_IMAGE_PIXELS} an image may have to be OCR'd")
        try:
            picture = page.images[name].image
        except (*_NOT_THE_PDFS_FAULT, LimitReachedError):
            raise
        except Exception as exc:
            # One undecodable picture (a broken logo) must not fail an otherwise readable file.
            log.warning("skipping a PDF image that cannot be decoded", image=str(name), error=str(exc))
            continue
        if picture is not None:
            texts.append(ocr_image(picture, languages).strip())
    return "\n\n".join(text for text in texts if text)


def _declared_pixels(page: PageObject, image_id: str | list[str]) -> int:
    """Width x height of an image XObject from its dictionary, without decoding it: `image_id`
    is pypdf's key, a name or the path of names through nested forms. 0 for an inline
    image (small by definition; pypdf parsed it with the content stream) or a dictionary
    too broken to say, which the decode that follows reports as such."""
    path = [image_id] if isinstance(image_id, str) else list(image_id)
    if path[0].startswith("~"):
        return 0
    try:
        holder = page
        for name in path:
            holder = holder["/Resources"].get_object()["/XObject"].get_object()[name].get_object()
        return int(holder.get("/Width", 0)) * int(holder.get("/Height", 0))
    except (KeyError, AttributeError, TypeError, ValueError):
        return 0


@contextmanager
def _pdf_errors() -> Iterator[None]:
    """Turn whatever pypdf raises on a bad file into a `PermanentError` with a code."""
    try:
        yield
    except _NOT_THE_PDFS_FAULT:
        raise
    except FileNotDecryptedError as exc:
        raise PermanentError(ErrorCode.ENCRYPTED_FILE, f"the PDF cannot be decrypted: {exc}") from exc
    except LimitReachedError as exc:
        raise PermanentError(ErrorCode.TOO_LARGE, f"the PDF exceeds a pypdf safety limit: {exc}") from exc
    except Exception as exc:
        raise PermanentError(ErrorCode.CORRUPT_FILE,
                             f"the PDF cannot be read: {type(exc).__name__}: {exc}") from exc
