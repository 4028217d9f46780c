"""The LanceDB backend, on a real LanceDB folder under tmp_path."""

import os
from pathlib import Path

import numpy as np
import pytest

from docflow.indexer.stores.lancedb import LanceDBStore, sql_string
from docflow.indexer.stores import VectorRecord, open_vector_store
from docflow.shared.embedding_models import EmbeddingModelMismatch
from docflow.shared.errors import ErrorCode, PermanentError, TransientError
from docflow.shared.messages import Chunk
from docflow.shared.settings import Settings


def records(document_id: str, version: int, vectors: list[list[float]],
            text: str = "chunk") -> list[VectorRecord]:
    """One record per vector; chunk 0 has no page, chunk i > 0 is on page i + 1."""
    return [VectorRecord.for_chunk(document_id, version,
                                   Chunk(index=i, text=f"{text} {i}", page=i + 1 if i else None),
                                   np.array(v, dtype=np.float32))
            for i, v in enumerate(vectors)]


@pytest.fixture
def store(tmp_path: Path) -> LanceDBStore:
    return LanceDBStore(str(tmp_path / "lancedb"))


def test_upsert_writes_one_vector_per_chunk(store):
    store.upsert("acme", records("doc1", 1, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert store.count("acme", "doc1") == 3


def test_upserting_the_same_ids_again_overwrites_instead_of_duplicating(store):
    store.upsert("acme", records("doc1", 1, [[1, 0, 0], [0, 1, 0]], text="old"))
    store.upsert("acme", records("doc1", 1, [[1, 0, 0], [0, 1, 0]], text="new"))
    assert store.count("acme", "doc1") == 2
    assert {hit.text for hit in store.search("acme", [1, 0, 0], 10)} == {"new 0", "new 1"}


def test_search_ranks_by_cosine_similarity(store):
    store.upsert("acme", records("doc1", 1, [[0, 1, 0], [10, 1, 0], [1, 1, 0]]))
    hits = store.search("acme", [1, 0, 0], 3)
    assert [hit.chunk_index for hit in hits] == [1, 2, 0]
    # Cosine ignores length: [10, 1, 0] is nearly parallel to the query.
    assert hits[0].score == pytest.approx(10 / np.sqrt(101), abs=1e-5)
    assert hits[2].score == pytest.approx(0.0, abs=1e-5)
    assert hits[0].score > hits[1].score > hits[2].score


def test_search_hits_carry_document_text_and_page(store):
    store.upsert("acme", records("doc1", 1, [[1, 0], [0, 1]]))
    first, second = store.search("acme", [1, 0], 2)
    assert (first.document_id, first.chunk_index, first.text, first.page) == ("doc1", 0, "chunk 0", None)
    assert (second.chunk_index, second.page) == (1, 2)


def test_search_returns_at_most_top_k(store):
    store.upsert("acme", records("doc1", 1, [[1, i] for i in range(10)]))
    assert len(store.search("acme", [1, 0], 4)) == 4


def test_tenants_never_see_each_others_vectors(store):
    store.upsert("acme", records("doc1", 1, [[1, 0], [0, 1]], text="acme"))
    assert store.search("globex", [1, 0], 10) == []
    assert store.count("globex", "doc1") == 0

    store.upsert("globex", records("doc2", 1, [[1, 0]], text="globex"))
    assert {hit.document_id for hit in store.search("globex", [1, 0], 10)} == {"doc2"}
    assert {hit.document_id for hit in store.search("acme", [1, 0], 10)} == {"doc1"}
    # Same document id in two tenants: deleting one leaves the other.
    store.upsert("globex", records("doc1", 1, [[1, 0]]))
    assert store.delete_document("globex", "doc1") == 1
    assert store.count("acme", "doc1") == 2


def test_delete_document_removes_every_version(store):
    store.upsert("acme", records("doc1", 1, [[1, 0], [0, 1]]))
    store.upsert("acme", records("doc1", 2, [[1, 0]]))
    store.upsert("acme", records("doc2", 1, [[1, 0]]))
    assert store.delete_document("acme", "doc1") == 3
    assert store.count("acme", "doc1") == 0
    assert store.count("acme", "doc2") == 1


def test_delete_document_keeping_a_version_removes_only_older_versions(store):
    store.upsert("acme", records("doc1", 1, [[1, 0], [0, 1]]))
    store.upsert("acme", records("doc1", 2, [[1, 0], [0, 1], [1, 1]]))
    store.upsert("acme", records("doc1", 3, [[1, 0]]))
    assert store.delete_document("acme", "doc1", keep_version=2) == 2
    # Version 3 belongs to a newer run; only that run may replace it.
    assert store.count("acme", "doc1") == 4
    assert store.delete_version("acme", "doc1", 3) == 1
    assert store.count("acme", "doc1") == 3


def test_a_missing_tenant_table_reads_as_empty(store):
    assert store.search("nobody", [1, 0], 5) == []
    assert store.count("nobody", "doc1") == 0
    assert store.delete_document("nobody", "doc1") == 0
    assert store.delete_version("nobody", "doc1", 1) == 0


def test_document_ids_are_escaped_in_filters(store):
    store.upsert("acme", records("it's", 1, [[1, 0]]))
    store.upsert("acme", records("other", 1, [[1, 0]]))
    assert store.count("acme", "it's") == 1
    assert store.delete_document("acme", "x' OR '1'='1") == 0
    assert store.count("acme", "other") == 1
    assert sql_string("a'b") == "'a''b'"


def test_a_vector_of_another_dimension_is_a_permanent_error(store):
    store.upsert("acme", records("doc1", 1, [[1, 0, 0]]))
    with pytest.raises(PermanentError):
        store.upsert("acme", records("doc2", 1, [[1, 0]]))
    with pytest.raises(PermanentError):
        store.search("acme", [1, 0], 3)


def test_io_errors_are_transient(store, tmp_path):
    store.upsert("acme", records("doc1", 1, [[1, 0], [0, 1]]))
    for folder, _, files in os.walk(tmp_path / "lancedb"):
        for name in files:
            if name.endswith(".lance"):
                os.remove(os.path.join(folder, name))
    with pytest.raises(TransientError) as caught:
        store.search("acme", [1, 0], 3)
    assert caught.value.code is ErrorCode.VECTOR_STORE_UNAVAILABLE


def test_factory_opens_lancedb_at_the_configured_uri(tmp_path):
    store = open_vector_store(Settings(vector_store="lancedb", lancedb_uri=str(tmp_path / "db")))
    assert isinstance(store, LanceDBStore)
    store.ping()
    store.upsert("acme", records("doc1", 1, [[1, 0]]))
    assert (tmp_path / "db").is_dir()


def test_a_process_keeping_its_table_handle_sees_other_processes_writes(tmp_path):
    """Each worker process keeps its tenants' table handles (LanceDBStore): the indexer's
    writes must still reach a search in another process, and a delete must still find
    rows another process wrote after the handle was opened."""
    searcher = LanceDBStore(str(tmp_path / "lancedb"))
    indexer = LanceDBStore(str(tmp_path / "lancedb"))
    indexer.upsert("acme", records("doc1", 1, [[1, 0]]))
    assert searcher.count("acme", "doc1") == 1  # the searcher now holds a handle

    indexer.upsert("acme", records("doc2", 1, [[0, 1]]), fresh=True)
    indexer.upsert("acme", records("doc1", 2, [[1, 0]]), fresh=True)

    assert [hit.document_id for hit in searcher.search("acme", [0, 1], 1)] == ["doc2"]
    assert searcher.delete_document("acme", "doc1", keep_version=2) == 1
    assert indexer.count("acme", "doc1") == 1


def test_a_table_handle_is_forgotten_after_an_error(store, tmp_path):
    store.upsert("acme", records("doc1", 1, [[1, 0]]))
    assert "tenant_acme" in store._tables
    with pytest.raises(PermanentError):
        store.upsert("acme", records("doc2", 1, [[1, 0, 0]]))
    assert "tenant_acme" not in store._tables, "a retry must open the table afresh"
    assert store.count("acme", "doc1") == 1


def test_a_process_keeps_a_bounded_number_of_table_handles(store, monkeypatch):
    monkeypatch.setattr("docflow.indexer.stores.lancedb.MAX_OPEN_TABLES", 2)
    for tenant in ("t1", "t2", "t3"):
        store.upsert(tenant, records("doc1", 1, [[1, 0]]))
    assert list(store._tables) == ["tenant_t2", "tenant_t3"]
    assert store.count("t1", "doc1") == 1  # reopened on demand


def test_health_counts_the_versions_lancedb_lists(store, tmp_path):
    """The manifest files a local table keeps are the versions lancedb lists (and old
    ones go with cleanup), without reading every manifest."""
    from datetime import timedelta

    import lancedb

    from docflow.indexer.stores.lancedb import count_versions

    for n in range(6):
        store.upsert("acme", records(f"doc{n}", 1, [[1.0, 0.0, float(n)]]), fresh=True)
    table = lancedb.connect(str(tmp_path / "lancedb")).open_table("tenant_acme")
    kept = store.health("acme")["versions"]
    assert kept == count_versions(table) == len(table.list_versions()) > 6
    table.optimize(cleanup_older_than=timedelta(0))
    table = lancedb.connect(str(tmp_path / "lancedb")).open_table("tenant_acme")
    assert store.health("acme")["versions"] == len(table.list_versions()) < kept


def test_a_table_records_its_model_and_refuses_another(store, tmp_path):
    store.upsert("acme", records("doc1", 1, [[1, 0]]), embedding_model="m:a:2")
    with pytest.raises(EmbeddingModelMismatch, match="'m:b:2'.*'m:a:2'"):
        store.upsert("acme", records("doc2", 1, [[0, 1]]), embedding_model="m:b:2")
    with pytest.raises(EmbeddingModelMismatch):
        store.search("acme", [1, 0], 3, embedding_model="m:b:2")
    assert [hit.document_id for hit in store.search("acme", [1, 0], 3, embedding_model="m:a:2")] == ["doc1"]
    store.maintain("acme", retention_seconds=0, vector_index_min_rows=10**6)  # compaction keeps it
    # Another process sees it, from the table alone.
    assert LanceDBStore(store.uri).embedding_model("acme") == "m:a:2"
    assert LanceDBStore(store.uri).embedding_model("nobody") is None


def test_a_table_from_before_models_were_recorded_adopts_the_first_model_written(store):
    store.upsert("acme", records("doc1", 1, [[1, 0]]))  # no model: an older indexer wrote it
    assert store.embedding_model("acme") is None
    assert store.search("acme", [1, 0], 3, embedding_model="m:b:2")  # unknown: not refused
    other = LanceDBStore(store.uri)
    other.upsert("acme", records("doc2", 1, [[0, 1]]), embedding_model="m:a:2")
    assert store.embedding_model("acme") == "m:a:2"  # the first handle sees the adoption
    with pytest.raises(EmbeddingModelMismatch):
        store.upsert("acme", records("doc3", 1, [[0, 1]]), embedding_model="m:b:2")


def test_each_generation_of_a_tenant_is_a_table_of_its_own_with_its_own_model(store):
    """A re-embed builds generation 1 beside 0 (docs/architecture.md, "Re-embedding"):
    another model and width, searched, deleted from and dropped on its own."""
    store.upsert("acme", records("doc1", 1, [[1, 0]]), embedding_model="hash:feature-hashing:2")
    store.upsert("acme", records("doc1", 1, [[1, 0, 0]]), embedding_model="hash:feature-hashing:3",
                 generation=1)
    assert (store.embedding_model("acme"), store.embedding_model("acme", 1)) == (
        "hash:feature-hashing:2", "hash:feature-hashing:3")
    assert [hit.document_id for hit in store.search("acme", [1, 0, 0], 1, generation=1,
                                                    embedding_model="hash:feature-hashing:3")] == ["doc1"]
    with pytest.raises(EmbeddingModelMismatch):
        store.search("acme", [1, 0], 1, embedding_model="hash:feature-hashing:3")
    assert store.delete_document("acme", "doc1", generation=1) == 1
    assert (store.count("acme", "doc1"), store.count("acme", "doc1", generation=1)) == (1, 0)
    assert store.drop("acme", 0) and not store.drop("acme", 0)
    assert store.search("acme", [1, 0], 1) == [] and store.embedding_model("acme") is None


def test_threads_indexing_a_new_tenants_first_documents_create_its_table_once(store):
    """The indexer's document worker runs threads (group commits): eight first
    documents of a tenant arrive at once, and every one is stored in the one table."""
    import threading

    errors = []

    def index(i: int) -> None:
        try:
            store.upsert("fresh", records(f"doc{i}", 1, [[1, 0, 0]]), fresh=True, embedding_model="m:x:3")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=index, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [store.count("fresh", f"doc{i}") for i in range(8)] == [1] * 8
    assert store.embedding_model("fresh") == "m:x:3"
