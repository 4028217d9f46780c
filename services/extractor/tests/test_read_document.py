"""Dispatch on the recorded content type; a document without text is empty_document."""

import io

import docx
import pytest
from PIL import Image

from docflow.extractor.readers import READERS, read_document
from docflow.shared.content_types import ContentType
from docflow.shared.errors import ErrorCode, PermanentError


def test_every_supported_content_type_has_a_reader():
    assert set(READERS) == set(ContentType)


def test_markdown_is_read_as_text(settings, record_progress):
    pages = read_document("text/markdown", b"# Title\n\nBody text.", settings, record_progress)
    assert [(p.page, p.text) for p in pages] == [(None, "# Title\n\nBody text.")]


@pytest.mark.parametrize("content_type", ["application/zip", "text/html", ""])
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


@pytest.mark.parametrize(("content_type", "data"), [
    pytest.param(ContentType.TEXT, b"", id="empty-text"),
    pytest.param(ContentType.TEXT, b" \n\t\n ", id="whitespace-text"),
    pytest.param(ContentType.DOCX, docx_of_empty_paragraphs(), id="docx-without-text"),
    pytest.param(ContentType.PNG, blank_png(), id="blank-image"),
])
def test_a_document_without_text_is_empty_document(settings, record_progress, content_type, data):
    with pytest.raises(PermanentError) as failure:
        read_document(content_type, data, settings, record_progress)
    assert failure.value.code == ErrorCode.EMPTY_DOCUMENT
