"""POST /v1/search against stand-in embedder and indexer workers (real Celery, real Redis).

The stand-ins serve the real task names on the real queues, so the gateway's chain,
routing, waiting and error mapping are exercised as in production; only what the
workers compute is faked.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from docflow.shared.celery_app import create_celery_app
from docflow.shared.names import Stage, Task, queues_of_stage


@dataclass
class StubWorkers:
    hits_by_tenant: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    search_calls: list[tuple] = field(default_factory=list)


@pytest.fixture
def stub_workers(settings):
    app = create_celery_app("stub-workers", settings)
    # Celery adds every "shared" task defined anywhere in this process to each app it
    # finalizes; when the workers' own tests ran first, that would be the real
    # embedder and indexer. Keep Celery's built-ins and only our stand-ins.
    app.finalize()
    for name in [name for name in app.tasks if not name.startswith("celery.")]:
        app.tasks.unregister(name)
    stub = StubWorkers()

    @app.task(name=Task.EMBED_QUERY.value, shared=False)
    def embed_query(query: str) -> list[float]:
        if query == "explode":
            raise RuntimeError("embedding model not loaded")
        return [0.5, 0.25]

    @app.task(name=Task.SEARCH.value, shared=False)
    def search(vector: list[float], tenant: str, top_k: int) -> Any:
        stub.search_calls.append((vector, tenant, top_k))
        return stub.hits_by_tenant.get(tenant, [])[:top_k]

    @app.task(name=Task.DELETE_VECTORS.value, shared=False)
    def delete_vectors(tenant: str, document_id: str) -> int:
        return 0

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING",
                      queues=[q.value for stage in (Stage.EMBED, Stage.INDEX) for q in queues_of_stage(stage)]):
        yield stub


def hit(document_id: str, chunk_index: int = 0, score: float = 0.9) -> dict[str, Any]:
    return {"document_id": document_id, "chunk_index": chunk_index, "text": f"chunk {chunk_index}",
            "score": score, "page": 1}


def test_search_returns_the_callers_hits_without_deleted_documents(gateway, stub_workers):
    kept = gateway.accepted()["document_id"]
    deleted = gateway.accepted()["document_id"]
    gateway.delete(f"/v1/documents/{deleted}")
    someone_elses = gateway.accepted(tenant="tenant-b")["document_id"]
    stub_workers.hits_by_tenant["tenant-a"] = [
        hit(kept, 0, 0.9), hit(deleted, 0, 0.8), hit(someone_elses, 0, 0.7), hit(kept, 3, 0.6)]

    response = gateway.post("/v1/search", json={"query": "fox", "top_k": 10})

    assert response.status_code == 200, response.text
    assert response.json() == {"results": [
        {"document_id": kept, "chunk_index": 0, "text": "chunk 0", "score": 0.9, "page": 1},
        {"document_id": kept, "chunk_index": 3, "text": "chunk 3", "score": 0.6, "page": 1},
    ]}
    # The embedding flowed from the first task into the second; the tenant came from the key.
    assert stub_workers.search_calls == [([0.5, 0.25], "tenant-a", 10)]


def test_top_k_defaults_to_5(gateway, stub_workers):
    gateway.post("/v1/search", json={"query": "fox"})
    assert stub_workers.search_calls[0][2] == 5


def test_worker_failure_is_502_with_the_reason(gateway, stub_workers):
    response = gateway.post("/v1/search", json={"query": "explode"})
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert Task.EMBED_QUERY.value in detail and "embedding model not loaded" in detail


def test_unexpected_result_shape_is_502(gateway, stub_workers):
    stub_workers.hits_by_tenant["tenant-a"] = [{"id": "not a hit"}]
    response = gateway.post("/v1/search", json={"query": "fox"})
    assert response.status_code == 502
    assert "unexpected shape" in response.json()["detail"]


def test_readyz_sees_a_live_indexer(gateway, stub_workers):
    response = gateway.client.get("/readyz", params={"indexer": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["indexer"] == "ok"


def test_no_workers_means_504_after_the_timeout(make_gateway):
    gateway = make_gateway(search_timeout_seconds=0.5)
    response = gateway.post("/v1/search", json={"query": "fox"})
    assert response.status_code == 504
    assert "timed out" in response.json()["detail"]


@pytest.mark.parametrize("body", [
    {"query": ""}, {"query": "   \n"}, {"query": "x" * 2001}, {"query": "fox", "top_k": 0},
    {"query": "fox", "top_k": 101}, {"top_k": 3}, {"query": "fox", "tenant": "tenant-b"}, {"query": 42},
])
def test_invalid_search_is_422(gateway, body):
    response = gateway.post("/v1/search", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
