"""Images are read by OCR, one page per frame; bad images fail with a clear code."""

import io

import pytesseract
import pytest
from PIL import Image, ImageDraw, ImageFont

from docflow.extractor.readers.image import read_image
from docflow.shared.errors import ErrorCode, PermanentError, TransientError

SENTENCE = "Volcanic soil makes the vineyards rich in minerals."
SECOND_SENTENCE = "Glaciers in the Alps have lost a third of their ice."


def picture_of(text: str, mode: str = "L") -> Image.Image:
    image = Image.new(mode, (1400, 200), "white")
    ImageDraw.Draw(image).text((40, 70), text, font=ImageFont.load_default(size=40), fill="black")
    return image


def encoded(image: Image.Image, format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def words(text: str) -> str:
    return " ".join(text.split())


def test_png_text_is_recovered_by_ocr(settings, record_progress, progress_calls):
    pages = read_image(encoded(picture_of(SENTENCE), "PNG"), settings, record_progress)
    assert [p.page for p in pages] == [1]
    assert SENTENCE in words(pages[0].text)
    assert progress_calls == [(1, 1)]


def test_text_on_a_transparent_background_is_read(settings, record_progress):
    image = Image.new("RGBA", (1400, 200), (0, 0, 0, 0))  # transparent *black*
    ImageDraw.Draw(image).text((40, 70), SENTENCE, font=ImageFont.load_default(size=40),
                               fill=(0, 0, 0, 255))
    pages = read_image(encoded(image, "PNG"), settings, record_progress)
    assert SENTENCE in words(pages[0].text)


def test_every_tiff_frame_is_a_page(settings, record_progress, progress_calls):
    first, second = picture_of(SENTENCE), picture_of(SECOND_SENTENCE)
    tiff = encoded(first, "TIFF", save_all=True, append_images=[second], compression="tiff_lzw")
    pages = read_image(tiff, settings, record_progress)
    assert [p.page for p in pages] == [1, 2]
    assert SENTENCE in words(pages[0].text)
    assert SECOND_SENTENCE in words(pages[1].text)
    assert progress_calls == [(1, 2), (2, 2)]


@pytest.mark.parametrize("data", [
    pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, id="png-header-only"),
    pytest.param(b"not an image at all", id="junk"),
])
def test_unreadable_image_is_corrupt_file(settings, record_progress, data):
    with pytest.raises(PermanentError) as failure:
        read_image(data, settings, record_progress)
    assert failure.value.code == ErrorCode.CORRUPT_FILE


def test_truncated_jpeg_is_corrupt_file(settings, record_progress):
    jpeg = encoded(picture_of(SENTENCE, "RGB"), "JPEG")
    with pytest.raises(PermanentError) as failure:
        read_image(jpeg[:len(jpeg) // 2], settings, record_progress)
    assert failure.value.code == ErrorCode.CORRUPT_FILE


def test_decompression_bomb_is_too_large(settings, record_progress, monkeypatch):
    png = encoded(picture_of(SENTENCE), "PNG")  # 1400 x 200 pixels
    # Pillow refuses images above twice MAX_IMAGE_PIXELS; lowered so the test stays small.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(PermanentError) as failure:
        read_image(png, settings, record_progress)
    assert failure.value.code == ErrorCode.TOO_LARGE


def test_more_frames_than_the_page_limit_is_too_large(settings, record_progress):
    limited = settings.model_copy(update={"max_pdf_pages": 1})
    tiff = encoded(picture_of(SENTENCE), "TIFF", save_all=True, append_images=[picture_of(SENTENCE)])
    with pytest.raises(PermanentError) as failure:
        read_image(tiff, limited, record_progress)
    assert failure.value.code == ErrorCode.TOO_LARGE


def test_missing_tesseract_is_a_transient_ocr_unavailable(settings, record_progress, monkeypatch):
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(TransientError) as failure:
        read_image(encoded(picture_of(SENTENCE), "PNG"), settings, record_progress)
    assert failure.value.code == ErrorCode.OCR_UNAVAILABLE


def test_missing_language_data_is_a_transient_ocr_unavailable(settings, record_progress):
    klingon = settings.model_copy(update={"ocr_languages": "tlh"})
    with pytest.raises(TransientError) as failure:
        read_image(encoded(picture_of(SENTENCE), "PNG"), klingon, record_progress)
    assert failure.value.code == ErrorCode.OCR_UNAVAILABLE
