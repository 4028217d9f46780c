"""Document events: one Redis Stream per tenant, appended by the status store.

Every change a client can see of a document (created, a new version, a stage begun,
progress, counts, completed, failed, cancelled, deleted) appends one entry to its
tenant's stream, written by the same Lua script (or MULTI) as the change itself
(docflow.shared.status): an event is never lost while its change happened, nor
emitted for a change that did not. The streams are trimmed approximately to
DOCFLOW_EVENTS_STREAM_MAX_LEN entries (`XADD ... MAXLEN ~`), so Redis memory stays
bounded. The gateway serves them as Server-Sent Events whose ids are the entries' ids
(docflow.gateway.routers.events), so a client resumes with `Last-Event-ID`.

An entry's fields are exactly ENTRY_FIELDS, as strings ('' for none); the model here
is how every reader sees them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from docflow.shared.pipeline_shape import DocumentStatus

if TYPE_CHECKING:
    import redis.asyncio

    from docflow.shared.status import DocumentRecord

_KEY_FORMAT = "{prefix}tenant:{tenant}:events"
# The fields the status scripts copy from the document's hash into each entry (beside
# `type`, `document_id` and `timestamp`), in this order.
RECORD_FIELDS = ("status", "stage", "progress", "pages", "chunks", "vectors", "version", "error")
ENTRY_FIELDS = ("type", "document_id", "timestamp", *RECORD_FIELDS)
STREAM_ID = re.compile(r"^\d+-\d+$")
START = "0-0"  # before every entry: what a stream never written to is read after


class EventType(StrEnum):
    """What happened; the SSE `event:` name."""

    CREATED = "created"  # uploaded: version 1, queued
    VERSION = "version"  # a new version started (reprocess, recovery): queued again
    STAGE = "stage"  # a stage began (its status and first progress)
    STATUS = "status"  # a status change made outside a stage's start
    PROGRESS = "progress"  # progress or counts moved
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REOPENED = "reopened"  # a failed version back in flight (dead letter replayed)
    REVERTED = "reverted"  # a new version undone: its enqueue failed, the record is as before
    DELETED = "deleted"
    # Not stream entries: what the gateway sends a client besides them.
    STATE = "state"  # the document's current state (first event of a document's stream)
    RESET = "reset"  # the client's Last-Event-ID was trimmed away: events were lost
    READY = "ready"  # first of a tenant stream opened without Last-Event-ID: where it starts


# After one of these a document's event stream ends.
FINAL_EVENT_TYPES = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED,
                               EventType.DELETED})


class EventError(BaseModel):
    code: str
    message: str
    stage: str | None = None


class DocumentEvent(BaseModel):
    """One event as clients receive it (the SSE data), `id` being the stream entry's id."""

    id: str | None = None
    type: EventType
    document_id: str
    status: DocumentStatus | None = None  # None once deleted
    stage: str | None = None
    progress: int = 0
    pages: int | None = None
    chunks: int | None = None
    vectors: int | None = None
    version: int | None = None
    error: EventError | None = None
    timestamp: datetime

    @property
    def final(self) -> bool:
        """Nothing more will happen to this version: a document's stream ends here.
        (A state event counts when it shows a final status.)"""
        return self.type in FINAL_EVENT_TYPES or (
            self.type == EventType.STATE and self.status in (
                DocumentStatus.COMPLETED, DocumentStatus.FAILED, DocumentStatus.CANCELLED))

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> "DocumentEvent":
        data: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
        if "error" in data:
            data["error"] = json.loads(data["error"])
        return cls.model_validate({**data, "id": entry_id})

    @classmethod
    def from_record(cls, record: "DocumentRecord", entry_id: str | None,
                    type_: EventType = EventType.STATE) -> "DocumentEvent":
        return cls(id=entry_id, type=type_, document_id=record.document_id, status=record.status,
                   stage=record.stage, progress=record.progress, pages=record.pages, chunks=record.chunks,
                   vectors=record.vectors, version=record.version,
                   error=record.error.model_dump(mode="json") if record.error else None,
                   timestamp=record.updated_at)

    def data(self) -> str:
        """The SSE `data:` line: the event without its id (SSE carries it as `id:`)."""
        return self.model_dump_json(exclude={"id"})


def entry(type_: EventType, record: "DocumentRecord") -> dict[str, str]:
    """A stream entry for a record written from Python (its creation); the scripts build
    the same fields from the hash."""
    event = DocumentEvent.from_record(record, None, type_)
    fields = event.model_dump(mode="json", exclude={"id"})
    fields["error"] = json.dumps(fields["error"]) if fields["error"] else None
    return {name: "" if fields[name] is None else str(fields[name]) for name in ENTRY_FIELDS}


def deleted_entry(document_id: str, version: str | None, timestamp: datetime) -> dict[str, str]:
    return {"type": EventType.DELETED.value, "document_id": document_id, "timestamp": timestamp.isoformat(),
            **{name: "" for name in RECORD_FIELDS}, "version": version or ""}


def events_key(prefix: str, tenant: str) -> str:
    """The tenant's stream."""
    return _KEY_FORMAT.format(prefix=prefix, tenant=tenant)


def id_tuple(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq)


# --- readers (asyncio: the gateway streams them on its event loop) ----------------------
async def head(client: "redis.asyncio.Redis", key: str) -> str:
    """The id of the stream's newest entry (START when it has none): reading after it
    gives only what comes next."""
    newest = await client.xrevrange(key, count=1)
    return newest[0][0] if newest else START


async def events_lost_after(client: "redis.asyncio.Redis", key: str, last_id: str) -> bool:
    """Whether entries after `last_id` were trimmed away before a client read them (or
    the id is none this stream gave: Redis lost its data, or the id is from the future).

    Trimming drops the oldest entries: nothing after `last_id` is lost while that entry
    is still there, or while every entry ever added is. Past that the id's successor
    may already be gone; the check says so even when only `last_id` itself went (the
    client then gets the current state once more, never a gap)."""
    if last_id == START:
        info = await _info(client, key)
        return info is not None and info["entries-added"] > info["length"]
    if await client.xrange(key, min=last_id, max=last_id, count=1):
        return False
    info = await _info(client, key)
    if info is None:
        return True  # the stream is gone (Redis lost it): nothing can be resumed
    if id_tuple(last_id) > id_tuple(info["last-generated-id"]):
        return True
    first = info.get("first-entry")
    if first is None or id_tuple(last_id) < id_tuple(first[0]):
        return info["entries-added"] > info["length"]
    return False  # between retained entries: an id that never existed, nothing lost


async def _info(client: "redis.asyncio.Redis", key: str) -> dict[str, Any] | None:
    if not await client.exists(key):
        return None
    return await client.xinfo_stream(key)


async def read_after(client: "redis.asyncio.Redis", key: str, last_id: str, count: int,
                     block_ms: int | None = None) -> list[DocumentEvent]:
    """Up to `count` events after `last_id`, oldest first; with `block_ms`, waits that long
    for the first one (XREAD BLOCK)."""
    reply = await client.xread({key: last_id}, count=count, block=block_ms)
    if not reply:
        return []
    _, entries = reply[0]
    return [DocumentEvent.from_entry(entry_id, fields) for entry_id, fields in entries]


async def read_range(client: "redis.asyncio.Redis", key: str, after: str, until: str,
                     count: int) -> list[DocumentEvent]:
    """Up to `count` events after `after` and up to `until` (inclusive), oldest first."""
    entries = await client.xrange(key, min=f"({after}", max=until, count=count)
    return [DocumentEvent.from_entry(entry_id, fields) for entry_id, fields in entries]
