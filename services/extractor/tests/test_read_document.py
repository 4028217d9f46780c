"""Dispatch on the recorded content type; a document without text is empty_document."""

import io

import docx
import pytest
from PIL import Image

from docflow.extractor.readers import READERS, read_document
from docflow.shared.content_types import HTML, ContentType
from docflow.shared.errors import ErrorCode, PermanentError


def test_every_supported_content_type_has_a_reader():
    # and fetched HTML pages, which only a URL's fetch judges (docflow.extractor.fetch)
    assert set(READERS) == set(ContentType) | {HTML}


def test_markdown_is_read_as_text(settings, record_progress):
    pages = read_document("text/markdown", b"# Title\n\nBody text.", settings, record_progress)
    assert [(p.page, p.text) for p in pages] == [(None, "# Title\n\nBody text.")]


@pytest.mark.parametrize("content_type", ["application/zip", "application/xhtml+xml", "text/uri-list", ""])
def test_an_unknown_content_type_is_unsupported_type(settings, record_progress, content_type):
    with pytest.raises(PermanentError) as failure:
        read_document(content_type, b"whatever", settings, record_progress)
    assert failure.value.code == ErrorCode.UNSUPPORTED_TYPE


def blank_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (400, 100), 255).save(out, format="PNG")
    return out.getvalue()


def docx_of_empty_paragraphs() -> bytes:
    document = docx.Document()
    document.add_paragraph("")
    document.add_paragraph("   ")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@pytest.mark.parametrize(("content_type", "data", "reason"), [
    pytest.param(ContentType.TEXT, b"", "the file contains no text", id="empty-text"),
    pytest.param(ContentType.TEXT, b" \n\t\n ", "the file contains no text", id="whitespace-text"),
    pytest.param(ContentType.DOCX, docx_of_empty_paragraphs(), "OCR found none in its images",
                 id="docx-without-text"),
    pytest.param(ContentType.PNG, blank_png(), "OCR found no text in the image", id="blank-image"),
])
def test_a_document_without_text_is_empty_document_saying_truthfully_why(settings, record_progress,
                                                                         content_type, data, reason):
    """Every empty document said "OCR found none in its images", a text file too."""
    with pytest.raises(PermanentError) as failure:
        read_document(content_type, data, settings, record_progress)
    assert failure.value.code == ErrorCode.EMPTY_DOCUMENT
    assert reason in failure.value.message
