"""POST /v1/search against stand-in embedder and indexer workers (real Celery, real Redis).

The stand-ins serve the real task names on the real queues, so the gateway's chain,
routing, waiting and error mapping are exercised as in production; only what the
workers compute is faked.
"""

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from celery.contrib.testing.worker import start_worker
from structlog.testing import capture_logs

from docflow.shared.celery_app import create_celery_app
from docflow.shared.embedding_models import EmbeddingModelMismatch, mismatch_message
from docflow.shared.names import Stage, Task, queues_of_stage
from docflow.gateway.reranker import RERANKS
from docflow.shared.search import UnsupportedSearchMode
from docflow.shared.settings import Settings
from docflow.shared.search_filter import parse_filter


@dataclass
class StubWorkers:
    hits_by_tenant: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    search_calls: list[tuple] = field(default_factory=list)  # (vector, SearchQuery dict)
    embedded: list[str] = field(default_factory=list)
    metadata_updates: list[tuple[str, str]] = field(default_factory=list)


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
        stub.embedded.append(query)
        if query == "explode":
            raise RuntimeError("embedding model not loaded from /opt/docflow/models/minilm")
        return [0.5, 0.25]

    @app.task(name=Task.SEARCH.value, shared=False)
    def search(vector: list[float] | None, query: dict) -> Any:
        stub.search_calls.append((vector, query))
        if query["text"] == "slow":
            time.sleep(3.0)
        if query["text"] == "lance breaks":
            # What a LanceDB error looks like: a server path and the Rust source location.
            raise OSError("LanceError(IO): Generic LocalFileSystem error: Unable to open file "
                          "/var/lib/docflow/lancedb/tenant_a.lance/_versions/12.manifest, "
                          "/home/runner/work/lance/lance/rust/lance-table/src/io/commit.rs:735:17")
        if query["text"] == "unsupported":
            raise UnsupportedSearchMode("the configured vector store, pinecone, cannot serve keyword search")
        if query["text"] == "other model":
            # What the indexer raises (stores/lancedb.py) when the index holds another model.
            raise EmbeddingModelMismatch(mismatch_message("minilm:all-MiniLM-L6-v2:384",
                                                          "openai:text-embedding-3-small:1536",
                                                          query["tenant"], "the query"))
        return stub.hits_by_tenant.get(query["tenant"], [])[:query["limit"]]

    @app.task(name=Task.UPDATE_METADATA.value, shared=False)
    def update_metadata(tenant: str, document_id: str) -> int:
        stub.metadata_updates.append((tenant, document_id))
        return 1

    @app.task(name=Task.DELETE_DOCUMENT.value, shared=False)
    def delete_document(tenant: str, document_id: str) -> int:
        return 0

    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING",
                      queues=[q.value for stage in (Stage.EMBED, Stage.INDEX) for q in queues_of_stage(stage)]):
        yield stub


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


def hit(document_id: str, chunk_index: int = 0, score: float = 0.9) -> dict[str, Any]:
    return {"document_id": document_id, "chunk_index": chunk_index, "text": f"chunk {chunk_index}",
            "score": score, "page": 1, "highlights": [[0, 5]]}


def test_search_returns_the_callers_hits_without_deleted_documents(gateway, stub_workers):
    kept = gateway.accepted()["document_id"]
    deleted = gateway.accepted()["document_id"]
    gateway.delete(f"/v1/documents/{deleted}")
    someone_elses = gateway.accepted(tenant="tenant-b")["document_id"]
    stub_workers.hits_by_tenant["tenant-a"] = [
        hit(kept, 0, 0.9), hit(deleted, 0, 0.8), hit(someone_elses, 0, 0.7), hit(kept, 3, 0.6)]

    response = gateway.post("/v1/search", json={"query": "fox", "top_k": 10})

    assert response.status_code == 200, response.text
    # Each hit carries what the status store knows of its document.
    document = {"document_id": kept, "filename": "notes.txt", "content_type": "text/plain", "metadata": {}}
    assert response.json() == {"mode": "hybrid", "reranked": None, "results": [
        {**document, "chunk_index": 0, "text": "chunk 0", "score": 0.9, "page": 1, "highlights": [[0, 5]]},
        {**document, "chunk_index": 3, "text": "chunk 3", "score": 0.6, "page": 1, "highlights": [[0, 5]]},
    ]}
    # The embedding flowed from the first task into the second; the tenant came from the key.
    assert stub_workers.search_calls == [([0.5, 0.25], {
        "tenant": "tenant-a", "text": "fox", "mode": "hybrid", "limit": 10, "filter": None, "generation": 0})]


def test_top_k_defaults_to_5(gateway, stub_workers):
    gateway.post("/v1/search", json={"query": "fox"})
    assert stub_workers.search_calls[0][1]["limit"] == 5


def test_hits_carry_the_documents_current_metadata(gateway, stub_workers):
    document_id = gateway.accepted(metadata='{"department": "legal", "year": 2021}')["document_id"]
    stub_workers.hits_by_tenant["tenant-a"] = [hit(document_id)]
    [found] = gateway.post("/v1/search", json={"query": "fox"}).json()["results"]
    assert found["metadata"] == {"department": "legal", "year": 2021}


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_the_modes_that_need_a_vector_embed_the_query(gateway, stub_workers, mode):
    response = gateway.post("/v1/search", json={"query": "fox", "mode": mode})
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == mode
    assert stub_workers.embedded == ["fox"]
    assert stub_workers.search_calls[0][0] == [0.5, 0.25] and stub_workers.search_calls[0][1]["mode"] == mode


def test_keyword_search_goes_to_the_indexer_alone(gateway, stub_workers):
    response = gateway.post("/v1/search", json={"query": "fox", "mode": "keyword"})
    assert response.status_code == 200, response.text
    assert stub_workers.embedded == []
    assert stub_workers.search_calls == [(None, {
        "tenant": "tenant-a", "text": "fox", "mode": "keyword", "limit": 5, "filter": None, "generation": 0})]


def test_the_filter_reaches_the_indexer_validated_and_normalised(gateway, stub_workers):
    raw = {"department": "legal", "created_at": {"$gte": "2026-01-01T00:00:00Z"}}
    response = gateway.post("/v1/search", json={"query": "fox", "filter": raw})
    assert response.status_code == 200, response.text
    assert stub_workers.search_calls[0][1]["filter"] == parse_filter(raw)
    assert stub_workers.search_calls[0][1]["filter"] != raw  # created_at became epoch seconds


@pytest.mark.parametrize("bad_filter", [
    {"year": {"$regex": "20.*"}}, {"$and": []}, {"year": {"$in": "2020"}}, {"$or": "x"},
    {"tags": {"$in": ["a"] * 100_000}},
])
def test_a_malformed_filter_is_422_with_the_reason(gateway, stub_workers, bad_filter):
    response = gateway.post("/v1/search", json={"query": "fox", "filter": bad_filter})
    assert response.status_code == 422, response.text
    assert "filter" in response.text
    assert len(response.content) < 4000  # the reason, not an echo of a huge filter
    assert stub_workers.search_calls == []


@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
def test_a_mode_pinecone_is_not_set_up_for_is_400_naming_it(make_gateway, stub_workers, mode):
    gateway = make_gateway(vector_store="pinecone", pinecone_sparse=False)
    response = gateway.post("/v1/search", json={"query": "fox", "mode": mode})
    assert response.status_code == 400, response.text
    assert "pinecone" in response.json()["detail"] and mode in response.json()["detail"]
    assert stub_workers.search_calls == []  # refused, never silently served as vector search
    assert gateway.post("/v1/search", json={"query": "fox", "mode": "vector"}).status_code == 200


@pytest.mark.parametrize(("sparse", "expected"), [(False, "vector"), (True, "hybrid")])
def test_an_unset_mode_is_the_best_the_store_serves(make_gateway, stub_workers, sparse, expected):
    """A client that never names a mode keeps working on a dense-only Pinecone index."""
    gateway = make_gateway(vector_store="pinecone", pinecone_sparse=sparse)
    response = gateway.post("/v1/search", json={"query": "fox"})
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == expected
    assert stub_workers.search_calls[0][1]["mode"] == expected


def test_a_422_shows_only_an_excerpt_of_a_huge_or_unencodable_input(gateway, stub_workers):
    huge = gateway.post("/v1/search", json={"query": "x" * 1_000_000})
    assert huge.status_code == 422 and len(huge.content) < 4000, huge.text[:300]
    assert "query" in huge.text
    lone = gateway.client.post("/v1/search", content=b'{"query": "a", "top_k": "\\ud800"}',
                               headers={**gateway.auth(), "Content-Type": "application/json"})
    assert lone.status_code == 422, lone.text


def test_a_lone_surrogate_in_the_query_is_422_not_500(gateway, stub_workers):
    """A lone surrogate in a search query answered 500: it cannot be encoded for the workers."""
    response = gateway.client.post("/v1/search", content=b'{"query": "fox \\ud800 den"}',
                                   headers={**gateway.auth(), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert not stub_workers.search_calls


def test_a_mode_the_indexer_refuses_is_400(gateway, stub_workers):
    response = gateway.post("/v1/search", json={"query": "unsupported", "mode": "keyword"})
    assert response.status_code == 400, response.text
    assert "pinecone" in response.json()["detail"]


def test_a_query_of_another_model_than_the_tenants_index_is_409_naming_both(gateway, stub_workers):
    response = gateway.post("/v1/search", json={"query": "other model"})
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "minilm:all-MiniLM-L6-v2:384" in detail and "openai:text-embedding-3-small:1536" in detail
    assert "re-embed" in detail.lower() and "tenant-a" in detail
    assert not detail.startswith("embedding_model_mismatch")  # the reason, without its code


# --- PATCH /v1/documents/{id}: metadata without re-embedding ------------------------

def test_patch_replaces_the_metadata_and_tells_the_indexer(gateway, stub_workers):
    document_id = gateway.accepted(metadata='{"department": "legal"}')["document_id"]
    response = gateway.client.patch(f"/v1/documents/{document_id}", headers=gateway.auth(),
                                    json={"metadata": {"department": "finance", "year": 2024}})
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"department": "finance", "year": 2024}
    assert gateway.get(f"/v1/documents/{document_id}").json()["metadata"] == {"department": "finance", "year": 2024}
    deadline = time.monotonic() + 5
    while not stub_workers.metadata_updates and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stub_workers.metadata_updates == [("tenant-a", document_id)]


def test_patch_of_another_tenants_document_is_404(gateway, stub_workers):
    document_id = gateway.accepted(tenant="tenant-b")["document_id"]
    response = gateway.client.patch(f"/v1/documents/{document_id}", headers=gateway.auth("tenant-a"),
                                    json={"metadata": {"x": 1}})
    assert response.status_code == 404
    assert gateway.get(f"/v1/documents/{document_id}", tenant="tenant-b").json()["metadata"] == {}


@pytest.mark.parametrize("body", [{"metadata": [1, 2]}, {"metadata": {"a": 1}, "status": "completed"}, {},
                                  {"metadata": {"deep": _nested(30)}}])
def test_patch_with_invalid_metadata_is_422(gateway, stub_workers, body):
    document_id = gateway.accepted()["document_id"]
    response = gateway.client.patch(f"/v1/documents/{document_id}", headers=gateway.auth(), json=body)
    assert response.status_code == 422, response.text
    assert gateway.get(f"/v1/documents/{document_id}").json()["metadata"] == {}


@pytest.mark.parametrize(("query", "step", "leaks"), [
    ("explode", Task.EMBED_QUERY.value, ["/opt/", "model not loaded"]),
    ("lance breaks", Task.SEARCH.value, ["/var/lib", "/home/runner", ".rs:", "LanceError", "manifest"]),
])
def test_a_worker_failure_is_502_naming_the_step_but_no_internals(gateway, stub_workers, query, step, leaks):
    """A 502 showed the worker's error as it was: server paths and Rust source locations."""
    with capture_logs() as logs:
        response = gateway.post("/v1/search", json={"query": query})
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert step in detail and response.headers["X-Request-ID"] in detail
    assert not [leak for leak in leaks if leak in detail], detail
    # The operator still finds the whole reason in the gateway's log, under that request id.
    [logged] = [entry for entry in logs if entry["event"] == "search failed"]
    assert leaks[0] in logged["error"]


# --- JSON bodies: bounded, and parsed strictly --------------------------------------

def test_a_search_body_over_the_bound_is_413_before_it_is_read(gateway, stub_workers):
    """A 100 MB search body used to be read whole (then echoed in a 105 MB 422)."""
    body = b'{"query": "fox", "filter": {"k": {"$in": [' + b'"v",' * 400_000 + b'"v"]}}}'
    response = gateway.client.post("/v1/search", content=body,
                                   headers={**gateway.auth(), "Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    assert len(response.content) < 1000 and not stub_workers.search_calls


@pytest.mark.parametrize("raw", [
    b'{"query": "fox", "query": "secret"}',
    b'{"query": "fox", "filter": {"year": {"$gte": 2020}, "year": {"$lt": 1900}}}',
    b'{"query": "fox", "filter": {"score": NaN}}',
    b'{"query": "fox", "filter": {"score": {"$lt": Infinity}}}',
])
def test_a_search_body_with_a_duplicate_key_or_nan_is_422(gateway, stub_workers, raw):
    response = gateway.client.post("/v1/search", content=raw,
                                   headers={**gateway.auth(), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "twice" in response.text or "not a JSON number" in response.text
    assert not stub_workers.search_calls


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"metadata": {"year": 2020, "year": 1999}}', "twice"),
    (b'{"metadata": {"a": 1}, "metadata": {"b": 2}}', "twice"),
    (b'{"metadata": {"score": NaN}}', "NaN"),
    (b'{"metadata": {"score": -Infinity}}', "-Infinity"),
    (b'{"metadata": ' + b'[' * 5000 + b']' * 5000 + b'}', "nests"),
])
def test_patch_refuses_duplicate_keys_and_nan_that_json_loads_would_take(gateway, stub_workers, raw, reason):
    """PATCH's body went through json.loads' defaults: the last of two keys won, NaN was kept."""
    document_id = gateway.accepted(metadata='{"department": "legal"}')["document_id"]
    response = gateway.client.patch(f"/v1/documents/{document_id}", content=raw,
                                    headers={**gateway.auth(), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text[:300]
    assert reason in response.json()["detail"]
    assert gateway.get(f"/v1/documents/{document_id}").json()["metadata"] == {"department": "legal"}


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
    {"query": "fox", "mode": "semantic"}, {"query": "fox", "filter": "year > 2020"},
])
def test_invalid_search_is_422(gateway, body):
    response = gateway.post("/v1/search", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]


# --- reranking: a local HTTP double stands in for a TEI/Cohere/Jina /rerank service ---

class RerankDouble(http.server.BaseHTTPRequestHandler):
    """Scores each text by how many of the query's words it contains (TEI's or Cohere's
    answer shape, by path); /slow answers after the gateway's timeout; /broken with a 500."""

    requests: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RerankDouble.requests.append({"path": self.path, "body": body,
                                      "authorization": self.headers.get("Authorization")})
        if self.path == "/slow":
            time.sleep(1.5)
        if self.path == "/broken":
            self.send_response(500)
            self.end_headers()
            return
        words = set(body["query"].split())
        scores = [len(words & set(text.split())) for text in body["texts"]]
        if self.path == "/cohere":
            answer: Any = {"results": [{"index": i, "relevance_score": score} for i, score in enumerate(scores)]}
        else:
            answer = [{"index": i, "score": score} for i, score in enumerate(scores)]
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def rerank_service() -> Iterator[str]:
    RerankDouble.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RerankDouble)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _texts_hits(document_id: str, texts: list[str]) -> list[dict[str, Any]]:
    return [{**hit(document_id, i, 1.0 - i / 10), "text": text} for i, text in enumerate(texts)]


@pytest.mark.parametrize("path", ["/rerank", "/cohere"])
def test_a_reranker_reorders_the_candidates_and_says_so(make_gateway, stub_workers, rerank_service, path):
    gateway = make_gateway(reranker="http", reranker_url=rerank_service + path, reranker_candidates=20,
                           reranker_api_key=SecretStr("secret-key"))
    document_id = gateway.accepted()["document_id"]
    stub_workers.hits_by_tenant["tenant-a"] = _texts_hits(document_id, ["red", "blue fox", "the quick brown fox"])

    response = gateway.post("/v1/search", json={"query": "quick brown fox", "top_k": 2})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reranked"] is True
    assert [(h["text"], h["score"]) for h in body["results"]] == [("the quick brown fox", 3.0), ("blue fox", 1.0)]
    # The indexer was asked for the reranker's candidates, not just top_k.
    assert stub_workers.search_calls[0][1]["limit"] == 20
    [sent] = RerankDouble.requests
    assert sent["body"]["query"] == "quick brown fox" and sent["authorization"] == "Bearer secret-key"


@pytest.mark.parametrize("path", ["/slow", "/broken"])
def test_a_slow_or_broken_reranker_keeps_the_fused_order(make_gateway, stub_workers, rerank_service, path):
    gateway = make_gateway(reranker="http", reranker_url=rerank_service + path, reranker_timeout_seconds=0.5)
    document_id = gateway.accepted()["document_id"]
    stub_workers.hits_by_tenant["tenant-a"] = _texts_hits(document_id, ["red", "blue fox", "the quick brown fox"])
    before = RERANKS.labels("fallback")._value.get()

    response = gateway.post("/v1/search", json={"query": "quick brown fox", "top_k": 3})

    assert response.status_code == 200, response.text
    assert response.json()["reranked"] is False
    assert [h["text"] for h in response.json()["results"]] == ["red", "blue fox", "the quick brown fox"]
    assert RERANKS.labels("fallback")._value.get() == before + 1


def test_the_reranker_needs_its_url():
    with pytest.raises(ValueError, match="DOCFLOW_RERANKER_URL"):
        Settings(reranker="http")


# --- overload: searches are bounded; probes never wait behind them -----------------

def test_searches_beyond_the_bound_get_503_at_once_and_probes_still_answer(make_gateway, stub_workers):
    """The stub indexer is one solo process taking three seconds per search, so the searches
    pile up waiting in the gateway, as behind a stopped or overloaded indexer. "At once"
    is judged against that: well under the three seconds a waiting search takes."""
    gateway = make_gateway(search_max_concurrent=2, gateway_threads=8, search_timeout_seconds=15)
    answers: list[tuple[int, float, str | None]] = []

    def one_search() -> None:
        started = time.monotonic()
        response = gateway.post("/v1/search", json={"query": "slow"})
        answers.append((response.status_code, time.monotonic() - started, response.headers.get("Retry-After")))

    threads = [threading.Thread(target=one_search) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the first two hold both slots now
    probe_started = time.monotonic()
    assert gateway.client.get("/healthz").status_code == 200
    assert gateway.client.get("/readyz").status_code == 200
    probe_seconds = time.monotonic() - probe_started
    for thread in threads:
        thread.join(30)

    refused = [answer for answer in answers if answer[0] == 503]
    assert sorted(code for code, _, _ in answers) == [200, 200, 503, 503, 503, 503], answers
    assert all(seconds < 2.5 and retry_after == "1" for _, seconds, retry_after in refused), refused
    assert probe_seconds < 2.5


def test_the_search_bound_must_leave_threads_for_everything_else():
    with pytest.raises(ValueError, match="DOCFLOW_SEARCH_MAX_CONCURRENT"):
        Settings(search_max_concurrent=64, gateway_threads=64)


def test_every_redis_pool_of_the_gateway_serves_all_its_threads_at_once(make_gateway):
    """kombu's Redis channel caps its pool at 10 connections by default: with more request
    threads than that publishing or polling at once, the rest got MaxConnectionsError,
    answered 503 "Redis unavailable" with Redis healthy (51 of 200 concurrent searches).
    Each pool the request threads draw on must hand out a connection to every thread."""
    threads = 24
    gateway = make_gateway(gateway_threads=threads, search_max_concurrent=8)
    services = gateway.client.app.state.services
    with services.celery.connection_for_write() as connection:
        pools = {"status store": services.redis.connection_pool,
                 "result backend": services.celery.backend.client.connection_pool,
                 "broker (kombu's channel)": connection.default_channel.pool}
        for name, pool in pools.items():
            held = []
            try:
                for _ in range(threads):
                    held.append(pool.get_connection())
                    held[-1].send_command("PING")
                    assert held[-1].read_response() in (b"PONG", "PONG", True)
            except redis.exceptions.ConnectionError as exc:
                pytest.fail(f"the {name} pool gave out after {len(held)} of {threads} connections: {exc}")
            finally:
                for each in held:
                    pool.release(each)


# --- a stored record that cannot be rendered breaks no read ----------------------------

def _deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.mark.parametrize("stored", [{"a": "\ud800"}, {"\udfff": 1}, _deep(300)], ids=["lone surrogate value",
                                                                                   "lone surrogate key", "deep"])
def test_a_stored_record_that_cannot_be_rendered_never_breaks_a_read(gateway, stub_workers, stored):
    """Uploads validate metadata now, but a record stored before they did (or by any
    other path) made GET of it and every listing of its tenant a 500 until it was deleted."""
    services = gateway.client.app.state.services
    broken, fine = (gateway.accepted(metadata='{"team": "docs"}')["document_id"] for _ in range(2))
    services.redis.hset(f"{services.settings.redis_key_prefix}doc:{broken}", "metadata",
                        json.dumps(stored))  # as an older gateway stored it

    listing = gateway.get("/v1/documents")
    assert listing.status_code == 200, listing.text[:300]
    by_id = {d["document_id"]: d for d in listing.json()["documents"]}
    assert by_id[fine]["metadata"] == {"team": "docs"} and by_id[fine]["metadata_error"] is None
    assert by_id[broken]["metadata"] == {} and "cannot be shown" in by_id[broken]["metadata_error"]
    one = gateway.get(f"/v1/documents/{broken}")
    assert one.status_code == 200 and one.json()["metadata_error"]
    stub_workers.hits_by_tenant["tenant-a"] = [
        {"document_id": broken, "chunk_index": 0, "text": "chunk", "score": 0.9, "page": 1, "highlights": []}]
    assert gateway.post("/v1/search", json={"query": "chunk"}).status_code == 200
    # PATCH repairs it.
    repaired = gateway.client.patch(f"/v1/documents/{broken}", headers=gateway.auth(), json={"metadata": {"ok": 1}})
    assert repaired.status_code == 200 and repaired.json()["metadata_error"] is None
