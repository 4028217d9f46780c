"""GET /v1/documents: newest first, paginated, filterable by status."""

import pytest


@pytest.fixture
def five_documents(gateway) -> list[str]:
    """Ids in upload order (oldest first)."""
    return [gateway.accepted(filename=f"doc{i}.txt")["document_id"] for i in range(5)]


def test_newest_first_with_total(gateway, five_documents):
    page = gateway.get("/v1/documents").json()
    assert [d["document_id"] for d in page["documents"]] == five_documents[::-1]
    assert (page["total"], page["limit"], page["offset"]) == (5, 20, 0)
    assert page["documents"][0]["filename"] == "doc4.txt"


def test_limit_and_offset_page_through(gateway, five_documents):
    newest_first = five_documents[::-1]
    first = gateway.get("/v1/documents", params={"limit": 2}).json()
    second = gateway.get("/v1/documents", params={"limit": 2, "offset": 2}).json()
    last = gateway.get("/v1/documents", params={"limit": 2, "offset": 4}).json()
    beyond = gateway.get("/v1/documents", params={"offset": 10}).json()
    assert [d["document_id"] for d in first["documents"]] == newest_first[0:2]
    assert [d["document_id"] for d in second["documents"]] == newest_first[2:4]
    assert [d["document_id"] for d in last["documents"]] == newest_first[4:]
    assert beyond["documents"] == [] and beyond["total"] == 5


def test_status_filter(gateway, five_documents):
    cancelled = five_documents[1]
    assert gateway.post(f"/v1/documents/{cancelled}/cancel").status_code == 200

    only_cancelled = gateway.get("/v1/documents", params={"status": "cancelled"}).json()
    still_queued = gateway.get("/v1/documents", params={"status": "queued"}).json()
    assert [d["document_id"] for d in only_cancelled["documents"]] == [cancelled]
    assert only_cancelled["total"] == 1
    assert still_queued["total"] == 4
    assert cancelled not in [d["document_id"] for d in still_queued["documents"]]


@pytest.mark.parametrize("params", [
    {"status": "done"}, {"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"offset": -1},
])
def test_invalid_query_is_422(gateway, params):
    response = gateway.get("/v1/documents", params=params)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_page_size_bound_comes_from_settings(make_gateway):
    gateway = make_gateway(list_page_size_max=3)
    assert gateway.get("/v1/documents", params={"limit": 3}).status_code == 200
    response = gateway.get("/v1/documents", params={"limit": 4})
    assert response.status_code == 422
    assert response.json() == {"detail": "limit must be between 1 and 3"}
    assert gateway.get("/v1/documents").json()["limit"] == 3


def _by_status(gateway) -> dict[str, list[str]]:
    listing = {}
    for status in ("queued", "extracting", "embedding", "indexing", "completed", "failed", "cancelled"):
        page = gateway.get("/v1/documents", params={"status": status}).json()
        assert page["total"] == len(page["documents"])
        if page["documents"]:
            listing[status] = [d["document_id"] for d in page["documents"]]
    return listing


def test_the_status_filter_follows_transitions_deletes_and_reprocesses(gateway, five_documents, redis_client):
    """The filter reads a sorted set per status (not every record): it must follow every move."""
    from docflow.shared.status import DocumentStatus, StatusStore

    store = StatusStore(redis_client)
    a, b, c, d, e = five_documents
    store.begin_stage(a, 1, "extract", DocumentStatus.EXTRACTING, 1)
    store.complete(b, 1, vectors=1)
    store.complete(c, 1, vectors=1)
    assert gateway.post(f"/v1/documents/{d}/cancel").status_code == 200
    assert _by_status(gateway) == {"queued": [e], "extracting": [a], "completed": [c, b], "cancelled": [d]}

    assert gateway.post(f"/v1/documents/{c}/reprocess").status_code == 202
    assert gateway.post(f"/v1/documents/{d}/reprocess").status_code == 202
    assert gateway.delete(f"/v1/documents/{a}").status_code == 204
    assert _by_status(gateway) == {"queued": [e, d, c], "completed": [b]}, "newest first, by upload time"
    store.complete(c, 2, vectors=1)
    assert _by_status(gateway) == {"queued": [e, d], "completed": [c, b]}
    assert gateway.get("/v1/documents", params={"status": "completed", "limit": 1, "offset": 1}).json()[
        "documents"][0]["document_id"] == b
