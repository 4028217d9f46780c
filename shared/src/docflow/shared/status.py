"""Per-document status in Redis: one hash per document, one sorted set per tenant.

Every stage writes here as it goes. Writes name the pipeline version they belong to
and are applied atomically by a Lua script only while that version is current and
the document is not yet final, so a stale or redelivered task can never move a
document backwards (status and progress only go forward).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from docflow.shared.errors import ErrorCode


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    EXTRACTING = "extracting"
    EMBEDDING = "embedding"
    INDEXING = "indexing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset({DocumentStatus.COMPLETED, DocumentStatus.FAILED, DocumentStatus.CANCELLED})
# Forward order of the live statuses; the Lua script refuses to move backwards.
_RANK = {s.value: i for i, s in enumerate(DocumentStatus)}


class DocumentError(BaseModel):
    code: ErrorCode
    message: str
    stage: str | None = None


class DocumentRecord(BaseModel):
    document_id: str
    tenant: str
    version: int = 1
    status: DocumentStatus = DocumentStatus.QUEUED
    progress: int = Field(default=0, ge=0, le=100)
    filename: str
    content_type: str
    size_bytes: int
    metadata: dict[str, Any] = Field(default_factory=dict)
    pages: int | None = None
    chunks: int | None = None
    vectors: int | None = None
    stage: str | None = None
    attempts: int = 0
    error: DocumentError | None = None
    task_id: str | None = None
    original_key: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


# KEYS[1] = document hash, KEYS[2] = the in-flight set.  ARGV: version, now, status
# ('' = keep), progress ('' = keep), then field/value pairs to set.  Returns 1 if
# applied, 0 if stale/final/backwards.
_UPDATE_LUA = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current or current ~= ARGV[1] then return 0 end
local rank = cjson.decode(ARGV[5])
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'completed' or status == 'failed' or status == 'cancelled' then return 0 end
if ARGV[3] ~= '' then
  if rank[ARGV[3]] < rank[status] then return 0 end
  redis.call('HSET', KEYS[1], 'status', ARGV[3])
  if ARGV[3] == 'completed' or ARGV[3] == 'failed' or ARGV[3] == 'cancelled' then
    redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'document_id'))
  end
end
if ARGV[4] ~= '' then
  local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
  if tonumber(ARGV[4]) > old then redis.call('HSET', KEYS[1], 'progress', ARGV[4]) end
end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return 1
"""

# A stage run's start in one round trip: count one more run of the stage (attempts
# restart at 1 when the stage changes), then _UPDATE_LUA's forward-only move to the
# stage's status and first progress (skipped, like an update, when it would move the
# status backwards: a redelivered earlier stage).
# KEYS[1] = hash; ARGV: version, stage, now, status, progress, rank (JSON).
# Returns the attempt number, 0 if stale/final (then nothing is written).
_BEGIN_LUA = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current or current ~= ARGV[1] then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'completed' or status == 'failed' or status == 'cancelled' then return 0 end
-- An earlier stage's message delivered again after a later stage began (its ack was
-- lost in a crash): its work already went on down the chain, so the run is stale. Were
-- it run, the later stages would run again with their run counters restarted.
local rank = cjson.decode(ARGV[6])
if rank[ARGV[4]] < rank[status] then return 0 end
if redis.call('HGET', KEYS[1], 'stage') ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'stage', ARGV[2], 'attempts', 0)
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'updated_at', ARGV[3])
local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
if tonumber(ARGV[5]) > old then redis.call('HSET', KEYS[1], 'progress', ARGV[5]) end
return attempt
"""
_RANK_JSON = json.dumps(_RANK)

# KEYS[1] = hash, KEYS[2] = the in-flight set; ARGV: task_id, now, expected version and
# expected updated_at ('' = any: a reprocess; both set: a recovery, which must not
# restart a document that moved meanwhile), then field/value pairs to reset. Returns
# the new version, or false when the record does not exist or moved.
_RESTART_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[3] ~= '' then
  local current = redis.call('HMGET', KEYS[1], 'version', 'updated_at', 'status')
  if current[1] ~= ARGV[3] or current[2] ~= ARGV[4] then return false end
  if current[3] == 'completed' or current[3] == 'failed' or current[3] == 'cancelled' then return false end
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'status', 'queued', 'progress', '0', 'attempts', '0',
           'task_id', ARGV[1], 'updated_at', ARGV[2])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local clock = redis.call('TIME')
redis.call('ZADD', KEYS[2], clock[1], redis.call('HGET', KEYS[1], 'document_id'))
return version
"""
_RESET_ON_RESTART = ("pages", "chunks", "vectors", "stage", "error", "completed_at")

# A failed version back in flight, for the replay of its dead-lettered stage: the
# only way out of a final status. KEYS[1] = hash, KEYS[2] = the in-flight set; ARGV:
# version, now. Returns 1 if reopened, 0 if the version is not current or the document
# is not `failed`.
_REOPEN_LUA = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current or current ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', '0', 'stage', '', 'error', '',
           'completed_at', '', 'updated_at', ARGV[2])
local clock = redis.call('TIME')
redis.call('ZADD', KEYS[2], clock[1], redis.call('HGET', KEYS[1], 'document_id'))
return 1
"""

_JSON_FIELDS = ("metadata", "error")


def _encode(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    return str(value)


class StatusStore:
    def __init__(self, client: redis.Redis, prefix: str = "docflow:") -> None:
        self.redis = client
        self.prefix = prefix
        self._update = client.register_script(_UPDATE_LUA)
        self._begin = client.register_script(_BEGIN_LUA)
        self._restart = client.register_script(_RESTART_LUA)
        self._reopen = client.register_script(_REOPEN_LUA)

    @classmethod
    def from_url(cls, url: str, prefix: str = "docflow:") -> "StatusStore":
        return cls(redis.Redis.from_url(url, decode_responses=True), prefix)

    def _doc_key(self, document_id: str) -> str:
        return f"{self.prefix}doc:{document_id}"

    def _tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:documents"

    @property
    def in_flight_key(self) -> str:
        """Every document not yet final, scored by when it (re)entered the pipeline:
        what the recovery sweep (docflow.gateway.recovery) checks, without scanning
        every document of every tenant."""
        return f"{self.prefix}documents:in_flight"

    def in_flight(self, limit: int = 10_000) -> list[str]:
        """Ids of documents not yet final, longest in flight first."""
        return self.redis.zrange(self.in_flight_key, 0, limit - 1)

    def activity(self, document_ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
        """{document id: (raw version, raw updated_at, status, task id)} for those that exist."""
        pipe = self.redis.pipeline()
        for document_id in document_ids:
            pipe.hmget(self._doc_key(document_id), "version", "updated_at", "status", "task_id")
        return {d: (v, u, s, t or "") for d, (v, u, s, t) in zip(document_ids, pipe.execute()) if v and u}

    # --- reads -----------------------------------------------------------------
    def get(self, document_id: str) -> DocumentRecord | None:
        raw = self.redis.hgetall(self._doc_key(document_id))
        return self._decode(raw) if raw else None

    def get_for_tenant(self, document_id: str, tenant: str) -> DocumentRecord | None:
        """The record, or None when it does not exist *or belongs to another tenant*."""
        record = self.get(document_id)
        return record if record and record.tenant == tenant else None

    def list(self, tenant: str, status: DocumentStatus | None = None, limit: int = 20,
             offset: int = 0) -> tuple[list[DocumentRecord], int]:
        """The tenant's documents newest first, and how many match in all."""
        ids = self.redis.zrevrange(self._tenant_key(tenant), 0, -1)
        if status is None:
            total, page_ids = len(ids), ids[offset:offset + limit]
            return self._many(page_ids), total
        pipe = self.redis.pipeline()
        for document_id in ids:
            pipe.hget(self._doc_key(document_id), "status")
        matching = [d for d, s in zip(ids, pipe.execute()) if s == status.value]
        return self._many(matching[offset:offset + limit]), len(matching)

    def _many(self, ids: list[str]) -> list[DocumentRecord]:
        pipe = self.redis.pipeline()
        for document_id in ids:
            pipe.hgetall(self._doc_key(document_id))
        return [self._decode(raw) for raw in pipe.execute() if raw]

    @staticmethod
    def _decode(raw: dict[str, str]) -> DocumentRecord:
        data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
        for name in _JSON_FIELDS:
            if name in data:
                data[name] = json.loads(data[name])
        return DocumentRecord.model_validate(data)

    # --- writes by the gateway ---------------------------------------------------
    def create(self, record: DocumentRecord, pipe: redis.client.Pipeline | None = None) -> None:
        """Write a new record. With `pipe` (a transaction), the writes are only queued on
        it, for the caller to execute together with its own (the gateway stores the
        task's owner in the same round trip)."""
        fields = {k: _encode(v) for k, v in record.model_dump().items()}
        fields["metadata"] = json.dumps(record.metadata)
        own_pipe = pipe is None
        if own_pipe:
            pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._doc_key(record.document_id), mapping=fields)
        pipe.zadd(self._tenant_key(record.tenant), {record.document_id: record.created_at.timestamp()})
        if record.status not in FINAL_STATUSES:
            pipe.zadd(self.in_flight_key, {record.document_id: record.created_at.timestamp()})
        if own_pipe:
            pipe.execute()

    def restart(self, document_id: str, task_id: str,
                if_unchanged: tuple[str, str] | None = None) -> int | None:
        """Start a new pipeline version (reprocess): counts, error and progress reset.

        Returns the new version, or None if the document was deleted meanwhile (the
        script never recreates a half-filled record). With `if_unchanged` (the raw
        `version` and `updated_at` fields, as `activity` reads them), only if the
        document has not moved since and is not final.
        """
        expected = list(if_unchanged) if if_unchanged is not None else ["", ""]
        version = self._restart(keys=[self._doc_key(document_id), self.in_flight_key], args=[
            task_id, utcnow().isoformat(), *expected,
            *[x for field in _RESET_ON_RESTART for x in (field, "")],
        ])
        return int(version) if version else None

    def reopen(self, document_id: str, version: int) -> bool:
        """Put a failed version back in flight (a dead letter's replay): error cleared,
        attempts restarted. False unless `version` is current and `failed`."""
        return bool(self._reopen(keys=[self._doc_key(document_id), self.in_flight_key],
                                 args=[version, utcnow().isoformat()]))

    def cancel(self, document_id: str) -> bool:
        record = self.get(document_id)
        if record is None or record.status in FINAL_STATUSES:
            return False
        return self.update(document_id, record.version, status=DocumentStatus.CANCELLED)

    def delete(self, document_id: str, tenant: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._doc_key(document_id))
        pipe.zrem(self._tenant_key(tenant), document_id)
        pipe.zrem(self.in_flight_key, document_id)
        pipe.execute()

    # --- writes by the stages ------------------------------------------------------
    def begin_stage(self, document_id: str, version: int, stage: str, status: DocumentStatus,
                    progress: int) -> int:
        """Count a run of `stage` and move the record to `status` and `progress` (forward
        only), in one round trip: a round trip costs as much as a small task's work.
        Returns the attempt number; 0 means the run is stale (deleted, reprocessed,
        final, or the document is already in a later stage) and nothing was written.
        So the stages' runs of a version only ever move forward, and a stage's first
        run (attempt 1) is the first of its version (the indexer appends on it)."""
        return int(self._begin(keys=[self._doc_key(document_id)], args=[
            version, stage, utcnow().isoformat(), status.value, max(0, min(100, int(progress))), _RANK_JSON]))

    def is_current(self, document_id: str, version: int) -> bool:
        current, status = self.redis.hmget(self._doc_key(document_id), "version", "status")
        return current == str(version) and status not in FINAL_STATUSES

    def update(self, document_id: str, version: int, status: DocumentStatus | None = None,
               progress: int | None = None, **fields: Any) -> bool:
        """Apply a change if `version` is current and the document not final."""
        args: list[str] = [str(version), utcnow().isoformat(),
                           status.value if status else "",
                           "" if progress is None else str(max(0, min(100, int(progress)))),
                           json.dumps(_RANK)]
        for name, value in fields.items():
            args += [name, _encode(value)]
        return bool(self._update(keys=[self._doc_key(document_id), self.in_flight_key], args=args))

    def complete(self, document_id: str, version: int, **fields: Any) -> bool:
        return self.update(document_id, version, DocumentStatus.COMPLETED, 100,
                           completed_at=utcnow(), **fields)

    def fail(self, document_id: str, version: int, error: DocumentError) -> bool:
        return self.update(document_id, version, DocumentStatus.FAILED, error=error,
                           completed_at=utcnow())
