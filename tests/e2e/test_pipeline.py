"""A document goes in through the gateway and comes out searchable, in every format."""

import pytest

from docflow.devstack import samples

# One distinct topic per document, so "found first" means something.
SENTENCES = {
    "pdf": "The lighthouse keeper counted forty seven ships passing the northern reef before dawn.",
    "docx": "Our bakery sells sourdough loaves made with rye flour and a hundred year old starter.",
    "png": "Volcanic soil on the island makes the vineyards unusually rich in minerals.",
    "scan": "The orchestra rehearsed the violin concerto twice before the evening premiere.",
    "txt": "Glaciers in the Alps have lost a third of their ice volume since nineteen eighty.",
}
FILLER = [
    "Quarterly figures were reviewed by the committee without further comment.",
    "The appendix lists every reference used in the preparation of this report.",
]


def corpus() -> dict[str, tuple[str, bytes]]:
    return {
        "pdf": ("report.pdf", samples.pdf([FILLER[0], SENTENCES["pdf"], FILLER[1]])),
        "docx": ("bakery.docx", samples.docx([SENTENCES["docx"]],
                                            table=[["Bread", "Price"], ["Rye sourdough", "4.50 EUR"]])),
        "png": ("vineyard.png", samples.png(SENTENCES["png"])),
        "scan": ("scan.pdf", samples.scanned_pdf([SENTENCES["scan"]])),
        "txt": ("glaciers.txt", samples.text([SENTENCES["txt"], FILLER[1]])),
    }


@pytest.fixture(scope="module")
def ingested(api_a) -> dict[str, dict]:
    ids = {kind: api_a.upload(name, data) for kind, (name, data) in corpus().items()}
    return {kind: api_a.wait_final(document_id) for kind, document_id in ids.items()}


def test_every_format_completes(ingested):
    for kind, record in ingested.items():
        assert record["status"] == "completed", (kind, record["error"])
        assert record["progress"] == 100
        assert record["chunks"] >= 1 and record["vectors"] == record["chunks"], kind
        assert record["error"] is None
        # The model its vectors come from (the index's), and the default runtime.
        assert (record["embedding_model"], record["embedding_runtime"]) == ("minilm:all-MiniLM-L6-v2:384",
                                                                            "onnx-int8"), kind
    assert ingested["pdf"]["pages"] == 3
    assert ingested["scan"]["pages"] == 1


@pytest.mark.parametrize("kind", list(SENTENCES))
def test_search_for_a_sentence_finds_its_document_first(api_a, ingested, kind):
    results = api_a.search(SENTENCES[kind])
    assert results, "no results"
    assert results[0]["document_id"] == ingested[kind]["document_id"]
    assert set(results[0]) == {"document_id", "filename", "content_type", "metadata", "chunk_index", "text",
                               "score", "page", "highlights"}


def test_pages_are_reported_where_the_format_has_them(api_a, ingested):
    top_pdf = api_a.search(SENTENCES["pdf"], top_k=1)[0]
    assert top_pdf["page"] == 2
    top_txt = api_a.search(SENTENCES["txt"], top_k=1)[0]
    assert top_txt["page"] is None


def test_docx_tables_are_extracted(api_a, ingested):
    hits = api_a.search("Rye sourdough price 4.50 EUR", top_k=3)
    bakery = [h for h in hits if h["document_id"] == ingested["docx"]["document_id"]]
    assert bakery and any("4.50 EUR" in h["text"] for h in bakery)


def test_a_corrupt_pdf_fails_at_once_with_a_specific_code(api_a):
    truncated = samples.pdf(["This file will be cut in half."])[:300]
    record = api_a.wait_final(api_a.upload("broken.pdf", truncated))
    assert record["status"] == "failed"
    assert record["error"]["code"] == "corrupt_file"
    assert record["error"]["stage"] == "extract"
    assert record["attempts"] == 1, "a permanent error must not be retried"


def test_another_tenant_cannot_read_or_find_a_document(api_a, api_b, ingested):
    document_id = ingested["txt"]["document_id"]
    assert api_b.http.get(f"/v1/documents/{document_id}").status_code == 404
    assert api_b.http.post(f"/v1/documents/{document_id}/reprocess").status_code == 404
    assert api_b.http.delete(f"/v1/documents/{document_id}").status_code == 404
    listed = api_b.http.get("/v1/documents").json()["documents"]
    assert document_id not in {d["document_id"] for d in listed}
    assert all(hit["document_id"] != document_id for hit in api_b.search(SENTENCES["txt"]))
    # ...and tenant A still has it, untouched.
    assert api_a.document(document_id)["status"] == "completed"


def test_task_state_follows_the_chain(api_a, ingested):
    task_id = ingested["pdf"]["task_id"]
    body = api_a.http.get(f"/v1/tasks/{task_id}").json()
    assert body["state"] == "SUCCESS"
    assert [s["stage"] for s in body["stages"]] == ["extract", "embed", "index"]
