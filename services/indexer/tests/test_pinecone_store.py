"""The Pinecone backend, through the real `pinecone` client, against a local double.

Pinecone's service cannot be reached from here: `docflow.devstack.pinecone_double`
stands in for its data plane (the same double the end-to-end tests index into).
"""

import json
import socket

import numpy as np
import pytest
from pinecone import Pinecone, PineconeError

from docflow.devstack.pinecone_double import API_KEY, PineconeDouble, served
from docflow.indexer.stores import pinecone as pinecone_store
from docflow.indexer.stores.pinecone import (
    MAX_METADATA_BYTES,
    MAX_UPSERT_REQUEST_BYTES,
    PineconeStore,
    fit_metadata,
    metadata_size,
    json_size,
    upsert_batches,
)
from docflow.indexer.stores import VectorRecord, open_vector_store
from docflow.shared.errors import ErrorCode, TransientError
from docflow.shared.messages import Chunk
from docflow.shared.search import SearchMode
from docflow.shared.settings import Settings


@pytest.fixture(scope="module")
def double_server():
    """The double served by uvicorn on a free port of 127.0.0.1, in a thread."""
    double = PineconeDouble()
    with served(double) as url:
        yield double, url


@pytest.fixture
def double(double_server) -> PineconeDouble:
    double, _ = double_server
    double.reset()
    return double


@pytest.fixture
def host(double_server) -> str:
    return double_server[1]


@pytest.fixture(autouse=True)
def no_sdk_retry_sleep(monkeypatch):
    """The SDK sleeps between its own retries; the tests need not wait for them."""
    from pinecone._internal import http_client

    monkeypatch.setattr(http_client, "_retry_sleep", lambda _seconds: None)


def make_store(host: str, batch_size: int = 1000) -> PineconeStore:
    return PineconeStore(Pinecone(api_key=API_KEY).index(host=host), batch_size)


def records(document_id: str, version: int, count: int, dimension: int = 8, text: str = "chunk",
            seed: int = 0) -> list[VectorRecord]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dimension)).astype(np.float32)
    return [VectorRecord.for_chunk(document_id, version,
                                   Chunk(index=i, text=f"{text} {i}", page=i % 3 or None), vectors[i])
            for i in range(count)]


def test_upsert_count_and_search_round_trip(double, host):
    store = make_store(host)
    written = records("doc1", 1, 5)
    assert store.upsert("acme", written) == 5
    assert store.count("acme", "doc1") == 5

    hits = store.search("acme", written[3].vector.tolist(), 3)
    assert len(hits) == 3
    best = hits[0]
    assert (best.document_id, best.chunk_index, best.text, best.page) == ("doc1", 3, "chunk 3", None)
    assert isinstance(best.chunk_index, int)
    assert best.score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert hits[1].page in (1, 2, None)


def test_namespaces_isolate_tenants(double, host):
    store = make_store(host)
    store.upsert("acme", records("doc1", 1, 3))
    assert set(double.namespaces) == {"acme"}
    assert store.search("globex", records("q", 1, 1)[0].vector.tolist(), 10) == []
    assert store.count("globex", "doc1") == 0

    store.upsert("globex", records("doc1", 1, 2, seed=1))
    assert store.delete_document("globex", "doc1") == 2
    assert store.count("acme", "doc1") == 3
    assert all(r.body.get("namespace") in ("acme", "globex") for r in double.requests_to("/vectors/upsert"))


def test_reupserting_deterministic_ids_overwrites(double, host):
    store = make_store(host)
    store.upsert("acme", records("doc1", 1, 4, text="old"))
    store.upsert("acme", records("doc1", 1, 4, text="new"))
    assert store.count("acme", "doc1") == 4
    assert len(double.namespaces["acme"]) == 4
    stored_texts = {v["metadata"]["text"] for v in double.namespaces["acme"].values()}
    assert stored_texts == {f"new {i}" for i in range(4)}


def test_upserts_carry_at_most_1000_vectors(double, host):
    store = make_store(host, batch_size=5000)  # clamped to Pinecone's limit
    store.upsert("acme", records("doc1", 1, 2500))
    sizes = [len(r.body["vectors"]) for r in double.requests_to("/vectors/upsert")]
    assert sizes == [1000, 1000, 500]
    assert store.count("acme", "doc1") == 2500


def test_upserts_honour_the_configured_batch_size(double, host):
    make_store(host, batch_size=300).upsert("acme", records("doc1", 1, 700))
    assert [len(r.body["vectors"]) for r in double.requests_to("/vectors/upsert")] == [300, 300, 100]


def test_upserts_stay_under_2_mb_per_request(double, host):
    double.reset(dimension=1536)
    store = make_store(host)
    store.upsert("acme", records("doc1", 1, 300, dimension=1536, text="x" * 4000))
    upserts = double.requests_to("/vectors/upsert")
    assert len(upserts) > 1, "300 wide vectors must not fit one 2 MB request"
    assert max(r.body_bytes for r in upserts) <= MAX_UPSERT_REQUEST_BYTES
    assert sum(len(r.body["vectors"]) for r in upserts) == 300
    assert store.count("acme", "doc1") == 300


def test_size_estimate_is_never_below_what_the_client_sends(double, host):
    # Tiny floats are where JSON encoders differ most (`1e-05` vs `0.00001`).
    vectors = np.random.default_rng(5).normal(scale=1e-4, size=(50, 8)).astype(np.float32)
    chunk_text = 'naïve “quotes” "escaped"\n'
    written = [VectorRecord.for_chunk("doc1", 1, Chunk(index=i, text=chunk_text), vectors[i])
               for i in range(50)]
    estimate = sum(json_size(pinecone_store.to_pinecone_vector(r)) + 1 for r in written) + 64 + len("acme")
    make_store(host).upsert("acme", written)
    (sent,) = double.requests_to("/vectors/upsert")
    assert sent.body_bytes <= estimate


def test_long_text_is_cut_to_fit_40_kb_metadata(double, host):
    store = make_store(host)
    long_texts = ["é€" * 30_000, '"\\\n' * 20_000]  # multibyte, and characters JSON escapes
    written = [VectorRecord.for_chunk("doc1", 1, Chunk(index=i, text=text, page=4),
                                      np.full(8, i + 1, np.float32))
               for i, text in enumerate(long_texts)]
    store.upsert("acme", written)
    for record in written:
        metadata = double.namespaces["acme"][record.id]["metadata"]
        assert metadata_size(metadata) <= MAX_METADATA_BYTES
        assert len(json.dumps(metadata, ensure_ascii=False).encode()) <= MAX_METADATA_BYTES
        assert len(metadata["text"]) > 1000
        assert record.text.startswith(metadata["text"])
        assert (metadata["document_id"], metadata["version"], metadata["chunk_index"], metadata["page"]) == \
            ("doc1", 1, record.chunk_index, 4)


def test_short_text_is_kept_whole_and_a_missing_page_is_left_out():
    record = VectorRecord.for_chunk("doc1", 2, Chunk(index=0, text="hello", page=None), np.zeros(3))
    assert fit_metadata(record) == {"document_id": "doc1", "version": 2, "chunk_index": 0, "text": "hello"}


def test_upsert_batches_split_on_bytes_and_on_count():
    vectors = [{"id": str(i), "values": [0.5] * 100} for i in range(10)]
    one = json_size(vectors[0]) + 1
    batches = list(upsert_batches(vectors, "ns", max_vectors=4, max_bytes=64 + 2 + 3 * one))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [len(b) for b in upsert_batches(vectors, "ns", max_vectors=4)] == [4, 4, 2]


def test_delete_document_lists_ids_by_prefix_and_deletes_in_batches(double, host):
    store = make_store(host)
    store.upsert("acme", records("doc1", 1, 1200))
    store.upsert("acme", records("doc1", 2, 150, seed=2))
    store.upsert("acme", records("doc10", 1, 5, seed=3))  # shares "doc1" as a prefix

    assert store.delete_document("acme", "doc1", keep_version=2) == 1200
    assert store.count("acme", "doc1") == 150
    assert store.count("acme", "doc10") == 5
    deletes = double.requests_to("/vectors/delete")
    assert [len(r.body["ids"]) for r in deletes] == [1000, 200]
    assert all("filter" not in r.body for r in deletes)
    assert len(double.requests_to("/vectors/list")) > 10  # paged, 100 ids at a time

    assert store.delete_document("acme", "doc1") == 150
    assert store.count("acme", "doc1") == 0
    assert store.count("acme", "doc10") == 5


def test_delete_keeping_a_version_leaves_newer_versions(double, host):
    store = make_store(host)
    for version in (1, 2, 3):
        store.upsert("acme", records("doc1", version, 2, seed=version))
    assert store.delete_document("acme", "doc1", keep_version=2) == 2
    assert store.delete_version("acme", "doc1", 3) == 2
    assert sorted(double.namespaces["acme"]) == ["doc1#v2#0", "doc1#v2#1"]


def test_deleting_a_version_also_deletes_the_ids_just_written_but_not_yet_listed(double, host):
    store = make_store(host)
    store.upsert("acme", records("doc1", 1, 3))
    double.listing_lags = True
    fresh = records("doc1", 1, 5, seed=9)[3:]  # chunks 3 and 4, written just now
    store.upsert("acme", fresh)
    assert store.count("acme", "doc1") == 3  # the listing does not show them yet

    assert store.delete_version("acme", "doc1", 1, written_ids=[r.id for r in fresh]) == 5
    assert double.namespaces["acme"] == {}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_transient(double, host, status):
    double.failures = [status] * 10  # more than the SDK's own retries
    with pytest.raises(TransientError) as caught:
        make_store(host).upsert("acme", records("doc1", 1, 2))
    assert caught.value.code is ErrorCode.VECTOR_STORE_UNAVAILABLE


def test_a_brief_failure_is_absorbed_by_the_sdk_retry(double, host):
    double.failures = [503]
    make_store(host).upsert("acme", records("doc1", 1, 2))
    assert len(double.namespaces["acme"]) == 2


def test_an_unreachable_index_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    store = make_store(f"http://127.0.0.1:{closed_port}")
    for call in (lambda: store.search("acme", [0.0] * 8, 3), store.ping):
        with pytest.raises(TransientError):
            call()


def test_a_wrong_api_key_is_not_retried_as_transient(double, host):
    store = PineconeStore(Pinecone(api_key="wrong").index(host=host))
    with pytest.raises(PineconeError) as caught:
        store.ping()
    assert not isinstance(caught.value, TransientError)


def test_factory_opens_pinecone_by_host(double, host):
    settings = Settings(vector_store="pinecone", pinecone_api_key=API_KEY, pinecone_index_host=host,
                        upsert_batch_size=2)
    store = open_vector_store(settings)
    assert isinstance(store, PineconeStore)
    store.ping()
    store.upsert("acme", records("doc1", 1, 5))
    assert [len(r.body["vectors"]) for r in double.requests_to("/vectors/upsert")] == [2, 2, 1]


def sparse_store(host: str) -> PineconeStore:
    return PineconeStore(Pinecone(api_key=API_KEY).index(host=host), sparse=True)


def test_keyword_search_needs_the_dotproduct_metric(double, host):
    """Pinecone stores sparse values on any metric but refuses to query them elsewhere."""
    store = sparse_store(host)  # the double's index is cosine after reset()
    store.upsert("acme", records("doc1", 1, 2, text="harbour"))
    assert double.namespaces["acme"]["doc1#v1#0"]["sparse"]
    with pytest.raises(PineconeError):
        store.search("acme", None, 3, mode=SearchMode.KEYWORD, text="harbour")
    double.metric = "dotproduct"
    hits = store.search("acme", None, 3, mode=SearchMode.KEYWORD, text="harbour")
    assert {hit.id for hit in hits} == {"doc1#v1#0", "doc1#v1#1"}


def test_a_chunk_with_more_distinct_terms_than_pinecone_takes_keeps_its_weightiest(double, host):
    double.reset(metric="dotproduct")
    store = sparse_store(host)
    text = " ".join(f"term{i}" for i in range(1500)) + " " + " ".join(["harbour"] * 5)
    (record,) = records("doc1", 1, 1)
    store.upsert("acme", [VectorRecord(**{**record.__dict__, "text": text})])
    (upsert,) = double.requests_to("/vectors/upsert")
    sparse = upsert.body["vectors"][0]["sparseValues"]
    assert len(sparse["indices"]) == 1000
    (hit,) = store.search("acme", None, 1, mode=SearchMode.KEYWORD, text="harbour")
    assert hit.id == "doc1#v1#0"
