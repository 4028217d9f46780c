"""GET /v1/documents/{id}/pages and /chunks: the current version's stored text, a slice at a time.

No extractor runs in these tests: the artifacts are written into the gateway's storage
folder with docflow.shared.artifacts, the module the extractor writes them with, under
the key the extractor uses (PipelineMessage.key), so what the routes read is what a run
leaves. tests/browser reads them after a real run.
"""

import pytest

from docflow.shared import artifacts
from docflow.shared.artifacts import PageText
from docflow.shared.errors import ErrorCode
from docflow.shared.messages import Chunk, PipelineMessage
from docflow.shared.status import DocumentError, DocumentStatus, StatusStore
from docflow.shared.storage import LocalStorage

ROUTES = ("pages", "chunks")


def store_extraction(gateway, document_id: str, version: int, pages: int, chunks_per_page: int) -> None:
    """What the extractor stores for a version: its pages.json and chunks.json."""
    message = PipelineMessage(document_id=document_id, tenant="tenant-a", version=version,
                              original_key="original", content_type="application/pdf")
    storage = LocalStorage(gateway.storage_root)
    page_texts = [PageText(page=n, text=f"v{version} page {n} text") for n in range(1, pages + 1)]
    chunks = [Chunk(index=i, page=1 + i // chunks_per_page, text=f"v{version} chunk {i}")
              for i in range(pages * chunks_per_page)]
    storage.put(message.key(artifacts.PAGES), artifacts.dump_pages(page_texts))
    storage.put(message.key(artifacts.CHUNKS), artifacts.dump_chunks(chunks))


def test_pages_and_chunks_are_read_in_slices(gateway):
    document_id = gateway.accepted()["document_id"]
    store_extraction(gateway, document_id, version=1, pages=9, chunks_per_page=5)  # 45 chunks

    first = gateway.get(f"/v1/documents/{document_id}/chunks")
    assert first.status_code == 200, first.text
    body = first.json()
    assert {k: body[k] for k in ("document_id", "version", "total", "offset", "limit")} == {
        "document_id": document_id, "version": 1, "total": 45, "offset": 0, "limit": 20}
    assert body["chunks"][0] == {"index": 0, "page": 1, "text": "v1 chunk 0"}
    assert [c["index"] for c in body["chunks"]] == list(range(20))

    last = gateway.get(f"/v1/documents/{document_id}/chunks", params={"offset": 40, "limit": 20}).json()
    assert [c["index"] for c in last["chunks"]] == [40, 41, 42, 43, 44]
    assert last["chunks"][-1] == {"index": 44, "page": 9, "text": "v1 chunk 44"}
    beyond = gateway.get(f"/v1/documents/{document_id}/chunks", params={"offset": 45}).json()
    assert beyond["chunks"] == [] and beyond["total"] == 45

    pages = gateway.get(f"/v1/documents/{document_id}/pages", params={"offset": 7, "limit": 100}).json()
    assert (pages["total"], pages["offset"], pages["limit"]) == (9, 7, 100)
    assert pages["pages"] == [{"page": 8, "text": "v1 page 8 text"}, {"page": 9, "text": "v1 page 9 text"}]


def assert_conflict_on_every_route(gateway, document_id: str, detail) -> None:
    """Both routes answer 409 with `detail(route)` as the reason."""
    for route in ROUTES:
        answer = gateway.get(f"/v1/documents/{document_id}/{route}")
        assert answer.status_code == 409
        assert answer.json()["detail"] == detail(route)


def test_the_current_version_is_read_and_a_reprocess_waits_for_its_extraction(gateway):
    document_id = gateway.accepted()["document_id"]
    store_extraction(gateway, document_id, version=1, pages=2, chunks_per_page=1)
    assert gateway.get(f"/v1/documents/{document_id}/pages").json()["version"] == 1

    assert gateway.post(f"/v1/documents/{document_id}/reprocess").status_code == 202
    assert_conflict_on_every_route(gateway, document_id, lambda route: (
        f"document {document_id} has no {route} yet: version 2 is queued; "
        f"its {route} are readable once it has been extracted"))

    store_extraction(gateway, document_id, version=2, pages=3, chunks_per_page=1)
    chunks = gateway.get(f"/v1/documents/{document_id}/chunks").json()
    assert chunks["version"] == 2 and chunks["total"] == 3 and chunks["chunks"][0]["text"] == "v2 chunk 0"


def test_a_document_that_failed_before_extraction_says_why_it_has_none(gateway, redis_client):
    document_id = gateway.accepted()["document_id"]
    StatusStore(redis_client).fail(document_id, 1, DocumentError(
        code=ErrorCode.CORRUPT_FILE, message="not a PDF", stage="extract"))
    assert_conflict_on_every_route(gateway, document_id, lambda route: (
        f"document {document_id} has no {route}: version 1 is failed "
        f"(corrupt_file at extract: not a PDF) and its {route} were never stored"))


def test_a_document_being_extracted_has_none_yet(gateway, redis_client):
    document_id = gateway.accepted()["document_id"]
    assert StatusStore(redis_client).update(document_id, 1, DocumentStatus.EXTRACTING, 5)
    answer = gateway.get(f"/v1/documents/{document_id}/chunks")
    assert answer.status_code == 409 and "version 1 is extracting" in answer.json()["detail"]


def test_unknown_and_other_tenants_documents_are_404_alike(gateway):
    document_id = gateway.accepted(tenant="tenant-a")["document_id"]
    store_extraction(gateway, document_id, version=1, pages=1, chunks_per_page=1)
    unknown_id = "f" * 32
    for route in ROUTES:
        foreign = gateway.get(f"/v1/documents/{document_id}/{route}", tenant="tenant-b")
        missing = gateway.get(f"/v1/documents/{unknown_id}/{route}", tenant="tenant-b")
        assert foreign.status_code == missing.status_code == 404
        # Indistinguishable from a document that does not exist, apart from the id echoed.
        assert foreign.json()["detail"].replace(document_id, "ID") == \
            missing.json()["detail"].replace(unknown_id, "ID")
        assert gateway.get(f"/v1/documents/{document_id}/{route}", tenant="tenant-a").status_code == 200


def test_a_deleted_document_is_404(gateway):
    document_id = gateway.accepted()["document_id"]
    store_extraction(gateway, document_id, version=1, pages=1, chunks_per_page=1)
    assert gateway.delete(f"/v1/documents/{document_id}").status_code == 204
    for route in ROUTES:
        assert gateway.get(f"/v1/documents/{document_id}/{route}").status_code == 404


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"offset": -1},
                                    {"offset": "first"}])
def test_a_limit_outside_1_to_100_or_a_negative_offset_is_422(gateway, params):
    document_id = gateway.accepted()["document_id"]
    store_extraction(gateway, document_id, version=1, pages=1, chunks_per_page=1)
    for route in ROUTES:
        answer = gateway.get(f"/v1/documents/{document_id}/{route}", params=params)
        assert answer.status_code == 422, (route, params, answer.text)
        [error] = answer.json()["detail"]
        assert error["loc"] == ["query", next(iter(params))]


def test_a_key_is_needed(gateway):
    document_id = gateway.accepted()["document_id"]
    for route in ROUTES:
        assert gateway.client.get(f"/v1/documents/{document_id}/{route}").status_code == 401
