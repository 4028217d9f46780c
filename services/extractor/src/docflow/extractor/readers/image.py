"""PNG, JPEG and TIFF: OCR with Tesseract, one page per frame (multi-page TIFF scans).

Pillow's decompression-bomb threshold (`PIL.Image.MAX_IMAGE_PIXELS`, kept at its
default) only warns up to twice its value and refuses beyond; we refuse every image
over it, as `too_large`, before any pixel is decoded.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO

from PIL import Image

from docflow.extractor.failures import NOT_THE_INPUTS_FAULT
from docflow.extractor.ocr import ocr_image
from docflow.extractor.pages import PageText, Progress
from docflow.shared import metrics
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings


def read_image(data: bytes, settings: Settings, progress: Progress) -> list[PageText]:
    with _image_errors():
        image = Image.open(BytesIO(data))
        frames = getattr(image, "n_frames", 1)
    # A frame is a scanned page: the page limit protects the worker from a
    # hundred-thousand-frame TIFF just as it does from such a PDF.
    if frames > settings.max_pdf_pages:
        raise PermanentError(ErrorCode.TOO_LARGE,
                             f"the image has {frames} frames; the limit is {settings.max_pdf_pages}")
    pages = []
    for index in range(frames):
        with _image_errors():
            image.seek(index)
            text = ocr_image(image, settings.ocr_languages)
        metrics.PAGES_OCR.labels("image").inc()
        pages.append(PageText(page=index + 1, text=text))
        progress(index + 1, frames)
    return pages


@contextmanager
def _image_errors() -> Iterator[None]:
    """Turn whatever Pillow raises on a bad image into a `PermanentError` with a code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except NOT_THE_INPUTS_FAULT:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PermanentError(ErrorCode.TOO_LARGE, f"the image is too large to decode safely: {exc}") from exc
    except Exception as exc:
        # UnidentifiedImageError, OSError (truncated), SyntaxError, ValueError, ...
        raise PermanentError(ErrorCode.CORRUPT_FILE,
                             f"the image cannot be read: {type(exc).__name__}: {exc}") from exc
