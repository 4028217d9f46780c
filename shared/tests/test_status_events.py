"""Every status change of the status store appends exactly one event to the tenant's
stream, in the same step, with the fields a client needs (real redis-server)."""

import asyncio
from datetime import datetime

import pytest
import redis.asyncio

from docflow.shared import events
from docflow.shared.errors import ErrorCode
from docflow.shared.events import DocumentEvent, EventType
from docflow.shared.status import DocumentError, DocumentRecord, DocumentStatus, StatusStore, utcnow

TENANT = "acme"


def make_record(document_id: str = "doc1") -> DocumentRecord:
    now = utcnow()
    return DocumentRecord(document_id=document_id, tenant=TENANT, filename="a.pdf",
                          content_type="application/pdf", size_bytes=10, original_key="k", task_id="t1",
                          created_at=now, updated_at=now)


def all_events(store: StatusStore) -> list[DocumentEvent]:
    return [DocumentEvent.from_entry(i, f) for i, f in store.redis.xrange(store.events_key(TENANT))]


class Recorder:
    """The events each step appended (and only those)."""

    def __init__(self, store: StatusStore) -> None:
        self.store, self.seen = store, 0

    def new(self) -> list[DocumentEvent]:
        every = all_events(self.store)
        fresh, self.seen = every[self.seen:], len(every)
        return fresh

    def one(self) -> DocumentEvent:
        fresh = self.new()
        assert len(fresh) == 1, fresh
        return fresh[0]


def test_every_transition_emits_exactly_one_event_with_the_state_after_it(redis_client):
    store = StatusStore(redis_client)
    seen = Recorder(store)

    store.create(make_record())
    created = seen.one()
    assert (created.type, created.document_id, created.status, created.version, created.progress) == \
        (EventType.CREATED, "doc1", DocumentStatus.QUEUED, 1, 0)
    assert isinstance(created.timestamp, datetime)

    assert store.begin_stage("doc1", 1, "extract", DocumentStatus.EXTRACTING, 0) == 1
    stage = seen.one()
    assert (stage.type, stage.status, stage.stage, stage.progress) == \
        (EventType.STAGE, DocumentStatus.EXTRACTING, "extract", 0)

    assert store.update("doc1", 1, progress=20, pages=3)
    progress = seen.one()
    assert (progress.type, progress.progress, progress.pages) == (EventType.PROGRESS, 20, 3)

    assert store.begin_stage("doc1", 1, "embed", DocumentStatus.EMBEDDING, 40) == 1
    assert seen.one().stage == "embed"
    assert store.update("doc1", 1, DocumentStatus.INDEXING, 80, chunks=7)
    status = seen.one()
    assert (status.type, status.status, status.chunks) == (EventType.STATUS, DocumentStatus.INDEXING, 7)

    assert store.complete("doc1", 1, vectors=7)
    completed = seen.one()
    assert (completed.type, completed.status, completed.progress, completed.pages, completed.chunks,
            completed.vectors, completed.version, completed.error) == \
        (EventType.COMPLETED, DocumentStatus.COMPLETED, 100, 3, 7, 7, 1, None)
    assert completed.final

    restarted = store.start_again("doc1", "t2")
    version = seen.one()
    assert (version.type, version.version, version.status, version.progress, version.pages) == \
        (EventType.VERSION, 2, DocumentStatus.QUEUED, 0, None)

    assert store.unrestart(restarted)
    reverted = seen.one()
    assert (reverted.type, reverted.version, reverted.status) == \
        (EventType.REVERTED, 1, DocumentStatus.COMPLETED)

    assert store.restart("doc1", "t3") == 2
    seen.one()
    broken = DocumentError(code=ErrorCode.CORRUPT_FILE, message="xref broken", stage="extract")
    assert store.fail("doc1", 2, broken)
    failed = seen.one()
    assert (failed.type, failed.status, failed.version) == (EventType.FAILED, DocumentStatus.FAILED, 2)
    assert failed.error.model_dump() == {"code": "corrupt_file", "message": "xref broken", "stage": "extract"}

    assert store.reopen("doc1", 2)
    reopened = seen.one()
    assert (reopened.type, reopened.status, reopened.error) == \
        (EventType.REOPENED, DocumentStatus.QUEUED, None)

    assert store.cancel("doc1")
    cancelled = seen.one()
    assert (cancelled.type, cancelled.status) == (EventType.CANCELLED, DocumentStatus.CANCELLED)

    store.delete("doc1", TENANT)
    deleted = seen.one()
    assert (deleted.type, deleted.document_id, deleted.status, deleted.version) == \
        (EventType.DELETED, "doc1", None, 2)
    assert deleted.final


def test_changes_that_are_refused_or_show_nothing_emit_nothing(redis_client):
    store = StatusStore(redis_client)
    seen = Recorder(store)
    store.create(make_record())
    store.begin_stage("doc1", 1, "embed", DocumentStatus.EMBEDDING, 50)
    seen.new()

    assert store.begin_stage("doc1", 1, "embed", DocumentStatus.EMBEDDING, 50) == 2  # a redelivery
    assert not store.update("doc1", 1, DocumentStatus.EXTRACTING, 10)  # backwards: refused
    assert not store.update("doc1", 7, progress=90)  # a stale version
    assert store.update("doc1", 1, artifacts_from=1)  # a field no client sees
    assert store.update("doc1", 1, progress=30)  # progress never goes back
    assert seen.new() == []

    store.delete("doc1", TENANT)
    store.delete("doc1", TENANT)  # a second delete deletes nothing, and says nothing
    assert [e.type for e in seen.new()] == [EventType.DELETED]
    assert not store.complete("doc1", 1)
    assert seen.new() == []


def test_the_stream_is_trimmed_to_about_its_bound(redis_client):
    store = StatusStore(redis_client, events_max_len=100)
    store.create(make_record())
    for progress in range(1, 100):
        store.update("doc1", 1, progress=progress)
    for n in range(300):
        store.create(make_record(f"other{n}"))
    length = redis_client.xlen(store.events_key(TENANT))
    # Approximate trimming drops whole radix-tree nodes (100 entries by default).
    assert 100 <= length < 300


def test_a_trimmed_position_is_recognised_and_a_retained_one_is_not(redis_server, redis_client):
    store = StatusStore(redis_client, events_max_len=100)
    key = store.events_key(TENANT)
    store.create(make_record("first"))
    first_id = redis_client.xrange(key)[0][0]

    async def lost(last_id: str) -> bool:
        client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            return await events.events_lost_after(client, key, last_id)
        finally:
            await client.aclose()

    assert not asyncio.run(lost(first_id))
    assert not asyncio.run(lost(events.START))
    for n in range(400):
        store.create(make_record(f"doc{n}"))
    retained_id = redis_client.xrange(key, count=1)[0][0]
    assert asyncio.run(lost(first_id))
    assert asyncio.run(lost(events.START))
    assert not asyncio.run(lost(retained_id))
    assert asyncio.run(lost("99999999999999-0"))  # from a stream this one is not


@pytest.mark.parametrize("prefix", ["docflow:", "other-app:"])
def test_the_scripts_write_where_the_key_function_says(redis_client, prefix):
    store = StatusStore(redis_client, prefix)
    store.create(make_record())
    store.begin_stage("doc1", 1, "extract", DocumentStatus.EXTRACTING, 5)
    assert redis_client.xlen(events.events_key(prefix, TENANT)) == 2
