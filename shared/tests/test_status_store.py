"""The status store on a real redis-server: versions, forward-only status, tenancy."""

from docflow.shared.errors import ErrorCode
from docflow.shared.status import DocumentError, DocumentRecord, DocumentStatus, StatusStore, utcnow


def make_record(document_id: str = "doc1", tenant: str = "acme") -> DocumentRecord:
    now = utcnow()
    return DocumentRecord(document_id=document_id, tenant=tenant, filename="a.pdf",
                          content_type="application/pdf", size_bytes=10, metadata={"k": "v"},
                          original_key="k", task_id="t1", created_at=now, updated_at=now)


def test_round_trip_keeps_every_field(redis_client):
    store = StatusStore(redis_client)
    record = make_record()
    store.create(record)
    loaded = store.get("doc1")
    assert loaded.model_dump(exclude={"updated_at"}) == record.model_dump(exclude={"updated_at"})


def test_status_and_progress_only_move_forward(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    assert store.update("doc1", 1, DocumentStatus.EMBEDDING, 50, chunks=3)
    # A redelivered extract task must not drag the document back.
    assert not store.update("doc1", 1, DocumentStatus.EXTRACTING, 10)
    store.update("doc1", 1, progress=20)
    record = store.get("doc1")
    assert (record.status, record.progress, record.chunks) == (DocumentStatus.EMBEDDING, 50, 3)


def test_stale_versions_and_final_documents_are_not_updated(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    new_version = store.restart("doc1", "t2")
    assert new_version == 2
    assert not store.update("doc1", 1, DocumentStatus.INDEXING)
    assert store.begin_stage("doc1", 1, "extract", DocumentStatus.EXTRACTING, 5) == 0
    assert store.fail("doc1", 2, DocumentError(code=ErrorCode.CORRUPT_FILE, message="bad", stage="extract"))
    assert not store.complete("doc1", 2)
    record = store.get("doc1")
    assert record.status == DocumentStatus.FAILED
    assert record.error.code == ErrorCode.CORRUPT_FILE


def test_attempts_count_runs_of_the_current_stage(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    assert store.begin_stage("doc1", 1, "extract", DocumentStatus.EXTRACTING, 5) == 1
    assert store.begin_stage("doc1", 1, "extract", DocumentStatus.EXTRACTING, 5) == 2
    assert store.begin_stage("doc1", 1, "embed", DocumentStatus.EMBEDDING, 40) == 1


def test_beginning_a_stage_counts_the_run_and_moves_status_and_progress_forward(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    assert store.begin_stage("doc1", 1, "embed", DocumentStatus.EMBEDDING, 40) == 1
    assert store.begin_stage("doc1", 1, "embed", DocumentStatus.EMBEDDING, 40) == 2
    record = store.get("doc1")
    assert (record.status, record.progress, record.stage, record.attempts) == (
        DocumentStatus.EMBEDDING, 40, "embed", 2)
    # A redelivered extract message (its ack lost) after embedding began is stale: its
    # chunks already went on to the embedder. Nothing changes, and a later index run
    # still counts as that stage's first.
    assert store.begin_stage("doc1", 1, "extract", DocumentStatus.EXTRACTING, 0) == 0
    assert store.get("doc1") == record
    assert store.begin_stage("doc1", 1, "index", DocumentStatus.INDEXING, 80) == 1
    assert store.begin_stage("doc1", 1, "embed", DocumentStatus.EMBEDDING, 40) == 0
    assert store.begin_stage("doc1", 1, "index", DocumentStatus.INDEXING, 80) == 2


def test_beginning_a_stage_of_a_stale_or_final_document_writes_nothing(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    assert store.restart("doc1", "t2") == 2
    assert store.begin_stage("doc1", 1, "extract", DocumentStatus.EXTRACTING, 0) == 0
    assert store.get("doc1").status == DocumentStatus.QUEUED
    assert store.cancel("doc1")
    assert store.begin_stage("doc1", 2, "extract", DocumentStatus.EXTRACTING, 0) == 0
    record = store.get("doc1")
    assert (record.status, record.attempts) == (DocumentStatus.CANCELLED, 0)


def test_tenants_see_only_their_documents(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record("a1", "acme"))
    store.create(make_record("b1", "globex"))
    assert store.get_for_tenant("a1", "globex") is None
    docs, total = store.list("acme")
    assert [d.document_id for d in docs] == ["a1"] and total == 1


def test_list_is_newest_first_paginated_and_filtered(redis_client):
    store = StatusStore(redis_client)
    for i in range(5):
        store.create(make_record(f"d{i}"))
    store.update("d3", 1, DocumentStatus.EXTRACTING)
    docs, total = store.list("acme", limit=2, offset=1)
    assert [d.document_id for d in docs] == ["d3", "d2"] and total == 5
    docs, total = store.list("acme", status=DocumentStatus.EXTRACTING)
    assert [d.document_id for d in docs] == ["d3"] and total == 1


def test_restart_of_a_deleted_document_recreates_nothing(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    store.delete("doc1", "acme")
    assert store.restart("doc1", "t2") is None
    assert store.get("doc1") is None
