"""Optical character recognition with Tesseract (via pytesseract).

Used for images and for PDF pages without a text layer. A missing Tesseract is the
worker's fault, not the document's: it raises `TransientError(OCR_UNAVAILABLE)`, so
the task is retried and, if the worker stays broken, dead-lettered for replay.
"""

import pytesseract
import structlog
from PIL import Image

from docflow.shared.errors import ErrorCode, TransientError

log = structlog.get_logger(__name__)

# Modes pytesseract hands to Tesseract as they are; alpha is laid over white by pytesseract.
_TESSERACT_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA"})


def ocr_image(image: Image.Image, languages: str) -> str:
    """The text Tesseract reads in `image`, with `languages` like "eng+deu"."""
    try:
        return pytesseract.image_to_string(_formatless_copy(image), lang=languages)
    except pytesseract.TesseractNotFoundError as exc:
        raise TransientError(ErrorCode.OCR_UNAVAILABLE,
                             "the tesseract binary is not installed on this worker") from exc
    except pytesseract.TesseractError as exc:
        # Almost always the worker's set-up (e.g. missing language data): pytesseract
        # has already given Tesseract a clean PNG, so the image itself is rarely at fault.
        raise TransientError(ErrorCode.OCR_UNAVAILABLE,
                             f"tesseract failed: {str(exc.message).strip()}") from exc


def _formatless_copy(image: Image.Image) -> Image.Image:
    """A copy without the source format, so pytesseract passes it on as lossless PNG.

    pytesseract otherwise re-encodes an image in its own format (a JPEG again, losing
    detail) and refuses formats it does not list.
    """
    if image.mode in _TESSERACT_MODES:
        return image.copy()
    return image.convert("RGBA")  # palette, CMYK, 16-bit...; RGBA keeps transparency


def check_tesseract(languages: str) -> None:
    """Log whether OCR can work in this process: a broken image shows at start-up,
    not on the first scanned document."""
    try:
        version = pytesseract.get_tesseract_version()
        available = set(pytesseract.get_languages())
    except (pytesseract.TesseractNotFoundError, pytesseract.TesseractError) as exc:
        log.error("tesseract unusable: images and scanned PDFs will fail with ocr_unavailable",
                  error=str(exc))
        return
    missing = sorted(set(languages.split("+")) - available)
    if missing:
        log.error("tesseract lacks language data for DOCFLOW_OCR_LANGUAGES", missing=missing)
    else:
        log.info("tesseract ready", version=str(version), languages=languages)
