"""Files built to exhaust a worker are refused before they can, each with a code.

The end-to-end versions (tests/e2e/test_bad_input.py) upload the same files
(docflow.devstack.hostile) through the gateway; these pin the reasons, and that
nothing is inflated first.
"""

import io
import random
import resource

import pytest
from PIL import Image

from docflow.devstack import samples
from docflow.devstack.hostile import (entity_bomb_docx, flate_bomb_pdf, pixel_bomb_pdf, rewritten_docx,
                                      truncated_docx)
from docflow.extractor.readers import read_document
from docflow.extractor.readers.zip_safety import MAX_COMPRESSION_RATIO, check_office_zip
from docflow.shared.content_types import ContentType
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings

MiB = 1024 * 1024


def read(content_type: str, data: bytes, **settings) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        read_document(content_type, data, Settings(**settings), lambda done, total: None)
    return caught.value


def read_watching_memory(content_type: str, data: bytes) -> tuple[PermanentError, float]:
    """The error, and how many MiB this process's peak memory grew while reading."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = read(content_type, data)
    return error, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def test_a_docx_inflating_beyond_the_limit_is_too_large_before_anything_is_inflated():
    padding = b" " * (300 * MiB)  # 300 MiB of XML whitespace zips to ~300 KB
    bomb = rewritten_docx(extra={"word/padding.xml": padding})
    assert len(bomb) < 1 * MiB
    error, grown_mib = read_watching_memory(ContentType.DOCX, bomb)
    assert error.code is ErrorCode.TOO_LARGE and "inflate to" in error.message
    assert grown_mib < 50, f"the check must not inflate the bomb (memory grew {grown_mib:.0f} MiB)"


def test_a_docx_entry_with_a_zip_bombs_ratio_is_too_large_even_under_the_total():
    bomb = rewritten_docx(extra={"word/media/filler.bin": b"\0" * (20 * MiB)})
    error = read(ContentType.DOCX, bomb)
    assert error.code is ErrorCode.TOO_LARGE and f"limit {MAX_COMPRESSION_RATIO}" in error.message


def test_the_total_limit_is_configurable():
    error = read(ContentType.DOCX, samples.docx(["small"]), max_docx_uncompressed_bytes=1000)
    assert error.code is ErrorCode.TOO_LARGE


def test_an_xml_entity_bomb_is_refused_as_a_dtd():
    error = read(ContentType.DOCX, entity_bomb_docx())
    assert error.code is ErrorCode.CORRUPT_FILE and "DTD" in error.message


def test_a_dtd_in_utf16_or_across_a_read_boundary_is_found():
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x/>'.encode("utf-16-le")
    with pytest.raises(PermanentError, match="DTD"):
        check_office_zip(rewritten_docx(extra={"customXml/utf16-test.xml": utf16}), 256 * MiB)
    # A comment that fills the first 1 MiB read, so the marker spans two reads.
    filler = random.Random(7).randbytes((1024 * 1024 - 7) // 2).hex().encode()
    straddling = b"<!--" + filler + b"-->" + b"<!DOCTYPE x []><x/>"
    with pytest.raises(PermanentError, match="DTD"):
        check_office_zip(rewritten_docx(extra={"customXml/straddle-test.xml": straddling}), 256 * MiB)


def test_a_docx_that_is_not_a_zip_is_corrupt():
    error = read(ContentType.DOCX, b"PK\x03\x04" + b"\x00" * 200)
    assert error.code is ErrorCode.CORRUPT_FILE


def test_a_truncated_docx_is_corrupt():
    error = read(ContentType.DOCX, truncated_docx())
    assert error.code is ErrorCode.CORRUPT_FILE


def test_an_ordinary_docx_passes_the_checks():
    pages = read_document(ContentType.DOCX, samples.docx(["An ordinary paragraph."]), Settings(),
                          lambda done, total: None)
    assert pages[0].text == "An ordinary paragraph."


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow warns from 89.5 Mpx and refuses from 179 Mpx
def test_an_image_over_pillows_pixel_limit_is_too_large_at_once(side):
    out = io.BytesIO()
    Image.new("1", (side, side), 1).save(out, "PNG")
    error = read(ContentType.PNG, out.getvalue())
    assert error.code is ErrorCode.TOO_LARGE and "pixels" in error.message


def test_a_pdf_stream_inflating_beyond_pypdfs_limit_is_too_large():
    error = read(ContentType.PDF, flate_bomb_pdf(200 * MiB))
    assert error.code is ErrorCode.TOO_LARGE and "limit" in error.message


def test_a_pdf_image_over_the_pixel_limit_is_too_large_before_it_is_decoded():
    """pypdf builds a picture from raw samples (no Pillow bomb check): 100 Mpx of 1-bit
    white would be ~100 MB as the grey image Tesseract is given, and minutes of OCR."""
    bomb = pixel_bomb_pdf(10_000)
    error, grown_mib = read_watching_memory(ContentType.PDF, bomb)
    assert error.code is ErrorCode.TOO_LARGE and "100000000 pixels" in error.message
    assert grown_mib < 10, f"the image must not be decoded (memory grew {grown_mib:.0f} MiB)"


def test_a_pdf_image_under_the_pixel_limit_is_still_ocrd():
    error = read(ContentType.PDF, pixel_bomb_pdf(2_000))  # 4 Mpx of white: decoded, OCR'd, blank
    assert error.code is ErrorCode.EMPTY_DOCUMENT and "OCR found none" in error.message
