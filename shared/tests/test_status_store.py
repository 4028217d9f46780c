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


# --- the status sets a filtered listing reads -----------------------------------------------
def _listed(store: StatusStore, status: DocumentStatus, tenant: str = "acme") -> list[str]:
    records, total = store.list(tenant, status, limit=100)
    assert total == len(records)
    return [r.document_id for r in records]


def _everywhere(store: StatusStore, tenant: str = "acme") -> dict[str, list[str]]:
    """Each status's listing, and (by reading every record) what it should be."""
    return {s.value: _listed(store, s, tenant) for s in DocumentStatus}


def test_a_filtered_listing_follows_every_status_move(redis_client):
    store = StatusStore(redis_client)
    for n in range(3):
        store.create(make_record(f"doc{n}"))
    assert _listed(store, DocumentStatus.QUEUED) == ["doc2", "doc1", "doc0"], "newest first"
    store.begin_stage("doc0", 1, "extract", DocumentStatus.EXTRACTING, 5)
    store.update("doc1", 1, DocumentStatus.EMBEDDING, 50)
    store.complete("doc2", 1, vectors=4)
    assert _everywhere(store) == {"queued": [], "extracting": ["doc0"], "embedding": ["doc1"], "indexing": [],
                                  "completed": ["doc2"], "failed": [], "cancelled": []}
    store.fail("doc0", 1, DocumentError(code=ErrorCode.CORRUPT_FILE, message="bad", stage="extract"))
    store.cancel("doc1")
    assert store.reopen("doc0", 1)  # a dead letter's replay
    assert store.restart("doc2", "t9") == 2  # a reprocess
    assert _everywhere(store) == {"queued": ["doc2", "doc0"], "extracting": [], "embedding": [], "indexing": [],
                                  "completed": [], "failed": [], "cancelled": ["doc1"]}
    store.delete("doc2", "acme")
    store.delete("doc1", "acme")
    assert _everywhere(store) == {**{s.value: [] for s in DocumentStatus}, "queued": ["doc0"]}
    # Stale and refused writes move nothing.
    assert not store.update("doc0", 7, DocumentStatus.COMPLETED)
    assert _listed(store, DocumentStatus.QUEUED) == ["doc0"]
    records, total = store.list("acme", DocumentStatus.QUEUED, limit=1, offset=1)
    assert (records, total) == ([], 1)


def test_a_listing_pages_through_a_status_set_without_reading_other_records(redis_client):
    store = StatusStore(redis_client)
    for n in range(30):
        store.create(make_record(f"doc{n:02d}"))
        if n % 3 == 0:
            store.complete(f"doc{n:02d}", 1, vectors=1)
    records, total = store.list("acme", DocumentStatus.COMPLETED, limit=4, offset=2)
    assert total == 10
    assert [r.document_id for r in records] == ["doc21", "doc18", "doc15", "doc12"]
    records, total = store.list("acme", None, limit=3, offset=0)
    assert (total, [r.document_id for r in records]) == (30, ["doc29", "doc28", "doc27"])


def test_the_status_sets_of_an_older_deployment_are_built_once(redis_client):
    store = StatusStore(redis_client)
    for n in range(5):
        store.create(make_record(f"doc{n}"))
    store.complete("doc1", 1, vectors=2)
    store.cancel("doc3")
    # As a deployment from before the status sets has it: no sets, no marker.
    for key in redis_client.scan_iter(match="docflow:tenant:*:status:*"):
        redis_client.delete(key)
    redis_client.delete("docflow:status_index:built")
    older = StatusStore(redis_client)
    assert not older.status_index_ready()
    assert _listed(older, DocumentStatus.COMPLETED) == ["doc1"], "read from every record meanwhile"
    assert older.ensure_status_index() == 5
    assert older.status_index_ready() and StatusStore(redis_client).status_index_ready()
    assert _everywhere(older) == {**{s.value: [] for s in DocumentStatus}, "queued": ["doc4", "doc2", "doc0"],
                                  "completed": ["doc1"], "cancelled": ["doc3"]}
    assert older.ensure_status_index() == 0


# --- versions: undoing a start, what is served, earlier tasks ------------------------------
def test_a_restart_whose_enqueue_failed_is_undone_exactly(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    store.complete("doc1", 1, vectors=4, chunks=4)
    before = store.get("doc1")
    restarted = store.start_again("doc1", "t2")
    assert restarted.version == 2 and _listed(store, DocumentStatus.QUEUED) == ["doc1"]
    assert store.unrestart(restarted)
    assert store.get("doc1") == before
    assert _listed(store, DocumentStatus.COMPLETED) == ["doc1"] and _listed(store, DocumentStatus.QUEUED) == []
    assert "doc1" not in store.in_flight(), "a final document is not in flight again"


def test_a_restart_that_moved_on_is_not_undone(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    restarted = store.start_again("doc1", "t2")
    store.begin_stage("doc1", 2, "extract", DocumentStatus.EXTRACTING, 1)
    assert not store.unrestart(restarted)
    assert store.get("doc1").version == 2


def test_a_cancelled_reprocess_still_says_which_version_search_serves(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    store.complete("doc1", 1, vectors=7)
    store.restart("doc1", "t2")
    store.cancel("doc1")
    record = store.get("doc1")
    assert (record.status, record.version, record.vectors) == (DocumentStatus.CANCELLED, 2, None)
    assert (record.served_version, record.served_vectors) == (1, 7)
    assert record.previous_task_ids == ["t1"]


def test_a_record_remembers_a_bounded_number_of_earlier_task_ids(redis_client):
    store = StatusStore(redis_client)
    store.create(make_record())
    for n in range(2, 40):
        store.restart("doc1", f"t{n}")
    record = store.get("doc1")
    assert record.task_id == "t39"
    assert record.previous_task_ids == [f"t{n}" for n in range(6, 39)][-32:]
