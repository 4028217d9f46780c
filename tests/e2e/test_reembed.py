"""Re-embedding a tenant (POST /v1/admin/reembed) on the real stack: the embedder's model
changes, searches are refused until the re-embed starts and answered throughout it, the
worker running the job is killed midway, and the job still ends with every document in
the new generation exactly once, including one uploaded and without one deleted during
the job (docs/architecture.md, "Re-embedding").

The models are the hashing provider at two widths (`hash:feature-hashing:256` and
`:128`): two models whose vectors cannot be mixed, which load in no time.
"""

import time
from collections.abc import Iterator

import httpx
import pytest

from docflow.devstack import samples
from docflow.devstack.faults import wait_for
from docflow.devstack.stack import LocalStack
from docflow.indexer.stores import open_vector_store
from docflow.indexer.stores.lancedb import table_name
from docflow.shared.names import Stage, WorkerRole

from .conftest import ADMIN_KEY, Api, own_stack

KEY, TENANT = "key-reembed", "reembed"
OTHER_KEY, OTHER_TENANT = "key-reembed-other", "reembed-other"
OLD_MODEL, NEW_MODEL = "hash:feature-hashing:256", "hash:feature-hashing:128"
DOCUMENTS = 24
ENV = {
    "DOCFLOW_API_KEYS": f"{KEY}={TENANT},{OTHER_KEY}={OTHER_TENANT}",
    "DOCFLOW_ADMIN_API_KEYS": ADMIN_KEY,
    "DOCFLOW_EMBEDDER": "hash",
    "DOCFLOW_HASH_DIMENSIONS": "256",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    "DOCFLOW_EXTRACT_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_EXTRACT_TIME_LIMIT": "12",
    "DOCFLOW_EMBED_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_EMBED_TIME_LIMIT": "12",
    "DOCFLOW_INDEX_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_INDEX_TIME_LIMIT": "12",
    "DOCFLOW_MAINTAIN_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_MAINTAIN_TIME_LIMIT": "12",
    # A message a killed worker held comes back within ~25 s.
    "DOCFLOW_VISIBILITY_TIMEOUT": "14",
    "DOCFLOW_SEARCH_TIMEOUT_SECONDS": "20",
    # Two documents in flight at a time: the job takes many coordinator steps, so the
    # kill lands between two of them.
    "DOCFLOW_REEMBED_WINDOW": "2",
}
MAINTENANCE = (Stage.INDEX, WorkerRole.MAINTENANCE)
QUERY_EMBEDDER = (Stage.EMBED, WorkerRole.QUERY)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    with own_stack(tmp_path_factory, "reembed", ENV) as local:
        yield local


@pytest.fixture(scope="module")
def api(stack) -> Api:
    return Api(stack.gateway_url, KEY, TENANT)


@pytest.fixture(scope="module")
def admin(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                        timeout=60)


def note(n: int) -> bytes:
    return samples.text([f"Field note {n}: the keeper of lighthouse marker{n} logged the tide at dawn.",
                         f"Marker{n} stood on the granite ledge beside the ferry pier."])


def search_status(api: Api, word: str) -> tuple[int, list[str]]:
    response = api.http.post("/v1/search", json={"query": word, "top_k": 3, "mode": "vector"})
    hits = [hit["document_id"] for hit in response.json()["results"]] if response.status_code == 200 else []
    return response.status_code, hits


def restart_embedders(stack: LocalStack, dimensions: int) -> None:
    """The operator's model change: both embedder workers restarted with the new model."""
    stack.env["DOCFLOW_HASH_DIMENSIONS"] = str(dimensions)
    stack.workers[Stage.EMBED].kill()
    stack.side_workers[QUERY_EMBEDDER].kill()
    stack.start_worker(Stage.EMBED)
    stack.start_side_worker(*QUERY_EMBEDDER)
    stack.wait_for_worker(Stage.EMBED)
    stack.wait_for_worker(*QUERY_EMBEDDER)


def job(admin: httpx.Client) -> dict:
    response = admin.get(f"/v1/admin/reembed/{TENANT}")
    assert response.status_code == 200, response.text
    return response.json()


def rows_of(stack: LocalStack, generation: int) -> dict[str, int]:
    """Vectors per document id in one generation's table (every row, not only current ones)."""
    import lancedb

    db = lancedb.connect(stack.settings().lancedb_uri)
    table = db.open_table(table_name(TENANT, generation))
    counts: dict[str, int] = {}
    for document_id in table.to_arrow().column("document_id").to_pylist():
        counts[document_id] = counts.get(document_id, 0) + 1
    return counts


def test_validation(stack, api, admin):
    assert admin.post("/v1/admin/reembed", json={"tenant": "nobody"}).status_code == 404
    assert admin.get("/v1/admin/reembed/nobody").status_code == 404
    assert admin.get(f"/v1/admin/reembed/{OTHER_TENANT}").status_code == 404, "never re-embedded"
    assert admin.post("/v1/admin/reembed", json={}).status_code == 422
    assert admin.post("/v1/admin/reembed", json={"tenant": TENANT, "model": "x"}).status_code == 422
    assert api.http.post("/v1/admin/reembed", json={"tenant": TENANT}).status_code == 403
    assert api.http.get(f"/v1/admin/reembed/{TENANT}").status_code == 403
    assert httpx.post(f"{stack.gateway_url}/v1/admin/reembed", json={"tenant": TENANT}).status_code == 401


def test_a_tenant_is_reembedded_with_a_worker_killed_midway(stack, api, admin):
    documents = {n: api.upload(f"note-{n}.txt", note(n)) for n in range(DOCUMENTS)}
    for document_id in documents.values():
        assert api.wait_final(document_id, timeout=120)["status"] == "completed"
    code, hits = search_status(api, "marker3")
    assert code == 200 and documents[3] in hits

    # The embedder now runs another model: the tenant's index holds the old one, and the
    # gateway does not know it yet (never re-embedded), so searches are refused.
    restart_embedders(stack, 128)
    code, _ = search_status(api, "marker3")
    assert code == 409

    started = admin.post("/v1/admin/reembed", json={"tenant": TENANT})
    assert started.status_code == 202, started.text
    assert (started.json()["state"], started.json()["from_generation"], started.json()["to_generation"]) == \
        ("running", 0, 1)
    second = admin.post("/v1/admin/reembed", json={"tenant": TENANT})
    assert second.status_code == 409, "one re-embed per tenant at a time"

    # From the job's first step the gateway knows the active model: searches are answered
    # with it (the query embedder loads the old model beside the new one).
    wait_for(lambda: job(admin)["active_model"] == OLD_MODEL, 30, "the active model to be recorded")
    refused = []

    def searched(word: str, expected: str) -> None:
        code, hits = search_status(api, word)
        if code != 200 or expected not in hits:
            refused.append((word, code, hits))

    searched("marker5", documents[5])
    # During the job: one upload (embedded with the new model) and one delete.
    added = api.upload("note-added.txt", note(99))
    deleted = documents.pop(7)
    assert api.http.delete(f"/v1/documents/{deleted}").status_code == 204

    # Kill the worker running the coordinator (the maintenance worker, main process and
    # pool, as a node loss does) once the job is midway.
    def midway() -> bool:
        now = job(admin)
        return 2 <= now["done"] < now["total"] - 4

    wait_for(midway, 60, "the job to be midway", interval=0.02)
    stack.side_workers[MAINTENANCE].kill()
    midway = job(admin)
    assert midway["state"] == "running" and midway["done"] < midway["total"], midway
    searched("marker11", documents[11])
    stack.start_side_worker(*MAINTENANCE)
    stack.wait_for_worker(*MAINTENANCE)

    deadline = time.monotonic() + 180
    while job(admin)["state"] == "running" and time.monotonic() < deadline:
        searched("marker2", documents[2])
        time.sleep(0.5)
    finished = job(admin)
    assert finished["state"] == "completed", finished
    assert (finished["active_generation"], finished["active_model"], finished["model"]) == \
        (1, NEW_MODEL, NEW_MODEL)
    assert finished["failed"] == 0 and finished["done"] == finished["total"]
    assert refused == [], "searches are answered throughout the re-embed"

    # Every document in the new generation exactly once (one row per chunk), the one
    # uploaded during the job too, the deleted one not at all.
    assert api.wait_final(added, timeout=60)["status"] == "completed"
    expected = {document_id: api.document(document_id)["chunks"]
                for document_id in [*documents.values(), added]}
    assert rows_of(stack, 1) == expected
    store = open_vector_store(stack.settings())
    assert store.embedding_model(TENANT, 1) == NEW_MODEL

    # Searches embed with the new model now, and find old and new documents alike.
    assert documents[5] in search_status(api, "marker5")[1]
    assert added in search_status(api, "marker99")[1]
    assert search_status(api, "marker7")[1][:1] != [deleted]


def test_a_second_reembed_after_a_completed_one_builds_the_next_generation(stack, api, admin):
    started = admin.post("/v1/admin/reembed", json={"tenant": TENANT})
    assert started.status_code == 202, started.text
    assert (started.json()["from_generation"], started.json()["to_generation"]) == (1, 2)
    wait_for(lambda: job(admin)["state"] != "running", 120, "the second re-embed")
    assert job(admin)["state"] == "completed" and job(admin)["active_generation"] == 2
    listed = api.http.get("/v1/documents", params={"status": "completed", "limit": 100}).json()["documents"]
    assert rows_of(stack, 2) == {document["document_id"]: document["chunks"] for document in listed}
