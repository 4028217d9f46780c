"""A DOCX holding a scanned page (a picture pasted into Word) is read by OCR, through
the real gateway, extractor, embedder and indexer, and found by search.

Its pictures were never OCR'd before: the document failed `empty_document`, with an
error that said OCR had found no text in its images.
"""

import io

from docx import Document

from docflow.devstack import samples

SCANNED = "The lighthouse keeper logged seventeen storms during the winter of the flood."


def docx_with_a_scan(caption: str) -> bytes:
    document = Document()
    document.add_paragraph(caption)
    document.add_picture(io.BytesIO(samples.png(SCANNED)))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_docx_of_a_scanned_page_is_read_by_ocr_and_found(api_a):
    document_id = api_a.upload("scan-in-word.docx", docx_with_a_scan("Figure 1."))
    record = api_a.wait_final(document_id)
    assert record["status"] == "completed", record
    hits = api_a.search("lighthouse keeper seventeen storms", mode="keyword")
    assert any(hit["document_id"] == document_id and "lighthouse keeper" in hit["text"] for hit in hits), hits
