"""Per-document status in Redis: one hash per document, sorted sets per tenant.

Every stage writes here as it goes. Writes name the pipeline version they belong to
and are applied atomically by a Lua script only while that version is current and
the document is not yet final, so a stale or redelivered task can never move a
document backwards (status and progress only go forward).

A tenant's documents are listed from two kinds of sorted set, both scored by
creation time: all of them (`tenant:<t>:documents`) and one per status
(`tenant:<t>:status:<status>`), so `GET /v1/documents?status=completed` reads one
page of one set instead of every record of the tenant. The same scripts that move a
status move the document between the status sets, in the same atomic step (and so
in the same round trip). Deployments from before the status sets build them once
(`ensure_status_index`, started by the gateway's sweep); until then a filtered
listing reads every record as it used to.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from pydantic import BaseModel, Field

from docflow.shared.errors import ErrorCode
from docflow.shared.events import RECORD_FIELDS, EventType, deleted_entry, entry, events_key
from docflow.shared.names import KEY_PREFIX
from docflow.shared.webhooks import notifications_key, webhooks_key

# The statuses and their forward order are the pipeline's shape (pipeline_shape); they
# are imported from here too, beside the records that carry them.
from docflow.shared.pipeline_shape import FINAL_STATUSES, STATUS_RANK, DocumentStatus


class DocumentError(BaseModel):
    code: ErrorCode
    message: str
    stage: str | None = None


class DocumentRecord(BaseModel):
    # `vectors` is this version's count (null until it completes). `served_version` and
    # `served_vectors` say what search returns for the document: the last version that
    # completed. A reprocess that is cancelled or fails leaves the previous version's
    # vectors in place (the indexer drops them only once a newer version completes), so
    # such a record says `cancelled` (or `failed`) and still serves the version before.
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
    served_version: int | None = None
    served_vectors: int | None = None
    # The lowest version whose artifacts may still be in storage: a completing version
    # removes those before it (StageTask.drop_older_versions_artifacts).
    artifacts_from: int = 1
    # The task ids of this document's earlier versions, newest last (bounded): their
    # task owners are removed with the document, and GET /v1/tasks reports them as
    # superseded.
    previous_task_ids: list[str] = Field(default_factory=list)
    # A document submitted as a URL (POST /v1/documents with {"url"}): where the extractor
    # fetches it from. Null for an upload.
    source_url: str | None = None
    # The model the served version's vectors come from (docflow.shared.embedding_models:
    # provider:model:dimensions) and the runtime that computed them, written when a
    # version completes; null before, or for a document completed before they were recorded.
    embedding_model: str | None = None
    embedding_runtime: str | None = None


# How many earlier task ids a record remembers; older ones' owners expire on their own.
MAX_PREVIOUS_TASK_IDS = 32
# Entries each tenant's event stream keeps, about (DOCFLOW_EVENTS_STREAM_MAX_LEN's default).
DEFAULT_EVENTS_MAX_LEN = 10_000
# Entries the notifications stream keeps, about (DOCFLOW_NOTIFICATIONS_STREAM_MAX_LEN's default).
DEFAULT_NOTIFICATIONS_MAX_LEN = 100_000


def record_key(prefix: str, document_id: str) -> str:
    """A document's record (a Redis hash)."""
    return f"{prefix}doc:{document_id}"


def _tenant_key_lua(name: str, key_of: Callable[[str], str]) -> str:
    """A Lua function `name(tenant)` spelling the key `key_of(tenant)` returns, so the
    status scripts use the Python key functions' spelling instead of a copy of it."""
    head, tail = key_of("\0").split("\0")
    return f"local function {name}(tenant) return {json.dumps(head)} .. tenant .. {json.dumps(tail)} end\n"


def utcnow() -> datetime:
    return datetime.now(UTC)


# Moves the document (KEYS[1]) from status set `old` to `new` (either may be nil),
# keeping its creation-time score from the tenant's listing. Prepended to every script
# that changes a status; @PREFIX@ is the store's key prefix (a Lua string literal), and
# FINAL (a set), QUEUED and FAILED spell the statuses the scripts name, from DocumentStatus.
_REINDEX_LUA = """
local FINAL = @FINAL@
local QUEUED, FAILED = @QUEUED@, @FAILED@
local function reindex(old, new)
  if old == new then return end
  local fields = redis.call('HMGET', KEYS[1], 'document_id', 'tenant')
  local base = @PREFIX@ .. 'tenant:' .. fields[2]
  if old then redis.call('ZREM', base .. ':status:' .. old, fields[1]) end
  if new then
    local score = redis.call('ZSCORE', base .. ':documents', fields[1]) or redis.call('TIME')[1]
    redis.call('ZADD', base .. ':status:' .. new, score, fields[1])
  end
end
"""

# Appends the document's (KEYS[1]) event to its tenant's stream, in the same script as
# the change it reports (docflow.shared.events): `emit(kind, before)` with `before` from
# `visible()` taken ahead of the change writes nothing when no field a client sees
# moved (a redelivered stage's start, a progress that would go backwards, a field only
# the pipeline reads); `emit(kind)` always writes. @EVENT_FIELDS@ and @MAX_LEN@ come
# from docflow.shared.events and DOCFLOW_EVENTS_STREAM_MAX_LEN; the timestamp is the
# `updated_at` every script sets.
_EVENTS_LUA = """
local EVENT_FIELDS = @EVENT_FIELDS@
local function visible()
  local values = redis.call('HMGET', KEYS[1], unpack(EVENT_FIELDS))
  for i = 1, #EVENT_FIELDS do values[i] = values[i] or '' end
  return values
end
local function emit(kind, before)
  local now = visible()
  if before then
    local moved = false
    for i = 1, #now do if now[i] ~= before[i] then moved = true end end
    if not moved then return end
  end
  local ids = redis.call('HMGET', KEYS[1], 'document_id', 'tenant', 'updated_at')
  local fields = {'type', kind, 'document_id', ids[1], 'timestamp', ids[3] or ''}
  for i, name in ipairs(EVENT_FIELDS) do
    fields[#fields + 1] = name
    fields[#fields + 1] = now[i]
  end
  redis.call('XADD', events_key(ids[2]), 'MAXLEN', '~', @MAX_LEN@, '*', unpack(fields))
end
"""

# A final status also goes to the global notifications stream the webhook dispatcher
# reads (docflow.shared.webhooks), in the same script as the change: only for a tenant
# with a webhook (its hash exists), so tenants without one cost nothing.
_NOTIFY_LUA = """
local function notify(final)
  local f = redis.call('HMGET', KEYS[1], 'document_id', 'tenant', 'version', 'error', 'updated_at')
  if redis.call('EXISTS', webhooks_key(f[2])) == 0 then return end
  redis.call('XADD', @NOTIFY_KEY@, 'MAXLEN', '~', @NOTIFY_MAX_LEN@, '*', 'tenant', f[2], 'document_id', f[1],
             'status', final, 'version', f[3] or '', 'error', f[4] or '', 'timestamp', f[5] or '')
end
"""

# KEYS[1] = document hash, KEYS[2] = the in-flight set.  ARGV: version, now, status
# ('' = keep), progress ('' = keep), then field/value pairs to set.  Returns 1 if
# applied, 0 if stale/final/backwards.
_UPDATE_LUA = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current or current ~= ARGV[1] then return 0 end
local rank = cjson.decode(ARGV[5])
local status = redis.call('HGET', KEYS[1], 'status')
if FINAL[status] then return 0 end
local before = visible()
if ARGV[3] ~= '' then
  if rank[ARGV[3]] < rank[status] then return 0 end
  redis.call('HSET', KEYS[1], 'status', ARGV[3])
  reindex(status, ARGV[3])
  if FINAL[ARGV[3]] then
    redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'document_id'))
  end
end
if ARGV[4] ~= '' then
  local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
  if tonumber(ARGV[4]) > old then redis.call('HSET', KEYS[1], 'progress', ARGV[4]) end
end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
local kind = 'progress'
if ARGV[3] ~= '' and ARGV[3] ~= status then kind = FINAL[ARGV[3]] and ARGV[3] or 'status' end
emit(kind, before)
if ARGV[3] ~= '' and FINAL[ARGV[3]] then notify(ARGV[3]) end
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
if FINAL[status] then return 0 end
-- An earlier stage's message delivered again after a later stage began (its ack was
-- lost in a crash): its work already went on down the chain, so the run is stale. Were
-- it run, the later stages would run again with their run counters restarted.
local rank = cjson.decode(ARGV[6])
if rank[ARGV[4]] < rank[status] then return 0 end
local before = visible()
if redis.call('HGET', KEYS[1], 'stage') ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'stage', ARGV[2], 'attempts', 0)
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'updated_at', ARGV[3])
reindex(status, ARGV[4])
local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
if tonumber(ARGV[5]) > old then redis.call('HSET', KEYS[1], 'progress', ARGV[5]) end
emit('stage', before)
return attempt
"""
_RANK_JSON = json.dumps(STATUS_RANK)

# KEYS[1] = hash, KEYS[2] = the in-flight set; ARGV: task_id, now, expected version and
# expected updated_at ('' = any: a reprocess; both set: a recovery, which must not
# restart a document that moved meanwhile), how many earlier task ids to keep, then
# field/value pairs to reset. Returns {new version, then the values the restart
# replaced (the _UNDONE_ON_RESTART fields, in order)} for `unrestart`, or false when
# the record does not exist or moved.
_RESTART_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[3] ~= '' then
  local current = redis.call('HMGET', KEYS[1], 'version', 'updated_at', 'status')
  if current[1] ~= ARGV[3] or current[2] ~= ARGV[4] then return false end
  if FINAL[current[3]] then return false end
end
local before = redis.call('HMGET', KEYS[1], @UNDONE@)
for i = 1, #before do before[i] = before[i] or '' end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local old_status = redis.call('HGET', KEYS[1], 'status')
local previous = redis.call('HGET', KEYS[1], 'previous_task_ids') or ''
local old_task = redis.call('HGET', KEYS[1], 'task_id') or ''
if old_task ~= '' then
  local ids = {}
  for id in string.gmatch(previous .. ' ' .. old_task, '%S+') do ids[#ids + 1] = id end
  local keep = tonumber(ARGV[5])
  if #ids > keep then ids = {unpack(ids, #ids - keep + 1)} end
  redis.call('HSET', KEYS[1], 'previous_task_ids', table.concat(ids, ' '))
end
redis.call('HSET', KEYS[1], 'status', QUEUED, 'progress', '0', 'attempts', '0',
           'task_id', ARGV[1], 'updated_at', ARGV[2])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
reindex(old_status, QUEUED)
local clock = redis.call('TIME')
redis.call('ZADD', KEYS[2], clock[1], redis.call('HGET', KEYS[1], 'document_id'))
emit('version')
table.insert(before, 1, version)
return before
"""
_RESET_ON_RESTART = ("pages", "chunks", "vectors", "stage", "error", "completed_at")
# What a restart replaces, so that a start whose enqueue failed can be undone exactly.
_UNDONE_ON_RESTART = ("status", "progress", "attempts", "task_id", "updated_at", "previous_task_ids",
                      *_RESET_ON_RESTART)

# Undo a restart whose first message could not be enqueued: only while nothing has
# happened to the new version (still queued, same task). KEYS[1] = hash, KEYS[2] =
# the in-flight set; ARGV: the new version, its task id, then the _UNDONE_ON_RESTART
# values the restart returned. Returns 1 if undone.
_UNRESTART_LUA = """
local current = redis.call('HMGET', KEYS[1], 'version', 'status', 'task_id')
if current[1] ~= ARGV[1] or current[2] ~= QUEUED or current[3] ~= ARGV[2] then return 0 end
local names = {@UNDONE@}
redis.call('HINCRBY', KEYS[1], 'version', -1)
for i, name in ipairs(names) do redis.call('HSET', KEYS[1], name, ARGV[i + 2]) end
local old_status = ARGV[3]
reindex(QUEUED, old_status)
if FINAL[old_status] then
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'document_id'))
end
emit('reverted')
return 1
"""

# A failed version back in flight, for the replay of its dead-lettered stage: the
# only way out of a final status. KEYS[1] = hash, KEYS[2] = the in-flight set; ARGV:
# version, now. Returns 1 if reopened, 0 if the version is not current or the document
# is not `failed`.
_REOPEN_LUA = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current or current ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= FAILED then return 0 end
redis.call('HSET', KEYS[1], 'status', QUEUED, 'attempts', '0', 'stage', '', 'error', '',
           'completed_at', '', 'updated_at', ARGV[2])
reindex(FAILED, QUEUED)
local clock = redis.call('TIME')
redis.call('ZADD', KEYS[2], clock[1], redis.call('HGET', KEYS[1], 'document_id'))
emit('reopened')
return 1
"""

# One document into the status set of the status it has now, out of the others
# (building the status sets of a deployment from before them; atomic per document, so
# a status moving meanwhile cannot leave it in two). KEYS[1] = hash; ARGV: statuses.
_INDEX_ONE_LUA = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
for i = 1, #ARGV do if ARGV[i] ~= status then reindex(ARGV[i], nil) end end
reindex(nil, status)
return 1
"""

_JSON_FIELDS = ("metadata", "error")
_LIST_FIELDS = ("previous_task_ids",)


def _encode(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if value is None:
        return ""
    return str(value)


class StatusStore:
    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX,
                 events_max_len: int = DEFAULT_EVENTS_MAX_LEN,
                 notifications_max_len: int = DEFAULT_NOTIFICATIONS_MAX_LEN) -> None:
        self.redis = client
        self.prefix = prefix
        self.events_max_len = events_max_len
        # Every script that moves a status also moves the document between status sets,
        # and appends its event to the tenant's stream.
        events = (_tenant_key_lua("events_key", lambda tenant: events_key(prefix, tenant)) + _EVENTS_LUA
                  .replace("@EVENT_FIELDS@", "{" + ", ".join(json.dumps(f) for f in RECORD_FIELDS) + "}")
                  .replace("@MAX_LEN@", str(int(events_max_len))))
        prelude = events + (_REINDEX_LUA.replace("@PREFIX@", json.dumps(prefix))
                   .replace("@FINAL@", "{" + ", ".join(f"[{json.dumps(s.value)}] = true"
                                                       for s in sorted(FINAL_STATUSES)) + "}")
                   .replace("@QUEUED@", json.dumps(DocumentStatus.QUEUED.value))
                   .replace("@FAILED@", json.dumps(DocumentStatus.FAILED.value)))
        prelude += _tenant_key_lua("webhooks_key", lambda tenant: webhooks_key(prefix, tenant))
        prelude += (_NOTIFY_LUA
                    .replace("@NOTIFY_KEY@", json.dumps(notifications_key(prefix)))
                    .replace("@NOTIFY_MAX_LEN@", str(int(notifications_max_len))))
        undone = ", ".join(json.dumps(name) for name in _UNDONE_ON_RESTART)

        def script(body: str):
            return client.register_script(prelude + body.replace("@UNDONE@", undone))

        self._update = script(_UPDATE_LUA)
        self._begin = script(_BEGIN_LUA)
        self._restart = script(_RESTART_LUA)
        self._unrestart = script(_UNRESTART_LUA)
        self._reopen = script(_REOPEN_LUA)
        self._index_one = script(_INDEX_ONE_LUA)
        self._status_index_ready = False

    @classmethod
    def from_url(cls, url: str, prefix: str = KEY_PREFIX) -> "StatusStore":
        return cls(redis.Redis.from_url(url, decode_responses=True), prefix)

    def _doc_key(self, document_id: str) -> str:
        return record_key(self.prefix, document_id)

    def record_key(self, document_id: str) -> str:
        """The document's hash (the gateway's event streams read it with the stream's head
        in one transaction, see docflow.gateway.event_streams)."""
        return self._doc_key(document_id)

    def events_key(self, tenant: str) -> str:
        return events_key(self.prefix, tenant)

    def _tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:documents"

    def documents_key(self, tenant: str) -> str:
        """Every document of the tenant, scored by creation time (a re-embed walks it)."""
        return self._tenant_key(tenant)

    def _status_key(self, tenant: str, status: DocumentStatus | str) -> str:
        return f"{self.prefix}tenant:{tenant}:status:{DocumentStatus(status).value}"

    @property
    def _status_index_built_key(self) -> str:
        return f"{self.prefix}status_index:built"

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
        return self.decode(raw) if raw else None

    def get_for_tenant(self, document_id: str, tenant: str) -> DocumentRecord | None:
        """The record, or None when it does not exist *or belongs to another tenant*."""
        record = self.get(document_id)
        return record if record and record.tenant == tenant else None

    def list(self, tenant: str, status: DocumentStatus | None = None, limit: int = 20,
             offset: int = 0) -> tuple[list[DocumentRecord], int]:
        """The tenant's documents newest first, and how many match in all: one page of one
        sorted set (all documents, or those of one status) and its size."""
        if status is not None and not self.status_index_ready():
            return self._list_by_reading_every_record(tenant, status, limit, offset)
        key = self._tenant_key(tenant) if status is None else self._status_key(tenant, status)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrange(key, offset, offset + limit - 1)
        pipe.zcard(key)
        page_ids, total = pipe.execute()
        return self._many(page_ids), total

    def status_index_ready(self) -> bool:
        """Whether the status sets cover every document (always, on a new deployment)."""
        if not self._status_index_ready:
            self._status_index_ready = bool(self.redis.exists(self._status_index_built_key)) \
                or self._new_deployment()
        return self._status_index_ready

    def _new_deployment(self) -> bool:
        """No tenant listing yet: nothing to build, the sets start complete."""
        if next(self.redis.scan_iter(match=f"{self.prefix}tenant:*:documents", count=100), None) is None:
            self.redis.set(self._status_index_built_key, "1")
            return True
        return False

    def ensure_status_index(self, batch: int = 500) -> int:
        """Build the status sets of a deployment from before them, once (later calls
        return at once); returns the documents indexed. Safe beside live writes."""
        if self.status_index_ready():
            return 0
        lock = f"{self.prefix}status_index:building"
        if not self.redis.set(lock, "1", nx=True, ex=600):
            return 0  # another gateway replica is at it
        indexed = 0
        statuses = [s.value for s in DocumentStatus]
        for tenant_key in self.redis.scan_iter(match=f"{self.prefix}tenant:*:documents", count=100):
            ids = self.redis.zrange(tenant_key, 0, -1)
            for start in range(0, len(ids), batch):
                pipe = self.redis.pipeline(transaction=False)
                for document_id in ids[start:start + batch]:
                    self._index_one(keys=[self._doc_key(document_id)], args=statuses, client=pipe)
                indexed += sum(int(done) for done in pipe.execute())
        self.redis.set(self._status_index_built_key, "1")
        self.redis.delete(lock)
        self._status_index_ready = True
        return indexed

    def _list_by_reading_every_record(self, tenant: str, status: DocumentStatus, limit: int,
                                      offset: int) -> tuple[list[DocumentRecord], int]:
        ids = self.redis.zrevrange(self._tenant_key(tenant), 0, -1)
        pipe = self.redis.pipeline()
        for document_id in ids:
            pipe.hget(self._doc_key(document_id), "status")
        matching = [d for d, s in zip(ids, pipe.execute()) if s == status.value]
        return self._many(matching[offset:offset + limit]), len(matching)

    def _many(self, ids: list[str]) -> list[DocumentRecord]:
        pipe = self.redis.pipeline()
        for document_id in ids:
            pipe.hgetall(self._doc_key(document_id))
        return [self.decode(raw) for raw in pipe.execute() if raw]

    @staticmethod
    def decode(raw: dict[str, str]) -> DocumentRecord:
        """A record from its hash's fields, as HGETALL returns them."""
        data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
        for name in _JSON_FIELDS:
            if name in data:
                data[name] = json.loads(data[name])
        for name in _LIST_FIELDS:
            if name in data:
                data[name] = data[name].split()
        return DocumentRecord.model_validate(data)

    def count_in_flight(self, tenant: str, pipe: redis.client.Pipeline) -> int:
        """Queue on `pipe` one ZCARD per status a document in flight can have: the sum of
        the first N replies of its `execute()` (N is returned) is how many of the tenant's
        documents are in flight. The status scripts keep these sets, so the count needs no
        counter of its own; queued on the transaction that creates a record, it is atomic
        with the create (the gateway's lane choice, docflow.gateway.lanes)."""
        in_flight = [status for status in DocumentStatus if status not in FINAL_STATUSES]
        for status in in_flight:
            pipe.zcard(self._status_key(tenant, status))
        return len(in_flight)

    def in_flight_of_tenant(self, tenant: str) -> int:
        """How many of the tenant's documents are in flight (`count_in_flight`, one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        counted = self.count_in_flight(tenant, pipe)
        return sum(int(n) for n in pipe.execute()[:counted])

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
        pipe.zadd(self._status_key(record.tenant, record.status),
                  {record.document_id: record.created_at.timestamp()})
        if record.status not in FINAL_STATUSES:
            pipe.zadd(self.in_flight_key, {record.document_id: record.created_at.timestamp()})
        # In the same transaction as the record: the event exists exactly when it does.
        pipe.xadd(self.events_key(record.tenant), entry(EventType.CREATED, record),
                  maxlen=self.events_max_len, approximate=True)
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
        restarted = self.start_again(document_id, task_id, if_unchanged)
        return restarted.version if restarted else None

    def start_again(self, document_id: str, task_id: str,
                    if_unchanged: tuple[str, str] | None = None) -> "Restarted | None":
        """`restart`, also returning what it replaced, for `unrestart`."""
        expected = list(if_unchanged) if if_unchanged is not None else ["", ""]
        reply = self._restart(keys=[self._doc_key(document_id), self.in_flight_key], args=[
            task_id, utcnow().isoformat(), *expected, MAX_PREVIOUS_TASK_IDS,
            *[x for field in _RESET_ON_RESTART for x in (field, "")],
        ])
        if not reply:
            return None
        return Restarted(document_id=document_id, task_id=task_id, version=int(reply[0]),
                         replaced=tuple(reply[1:]))

    def unrestart(self, restarted: "Restarted") -> bool:
        """Undo a restart nothing has acted on yet (its first message could not be
        enqueued): the record is again exactly what it was. False if the new version
        moved meanwhile (or the document was deleted): then it is not undone."""
        return bool(self._unrestart(keys=[self._doc_key(restarted.document_id), self.in_flight_key],
                                    args=[restarted.version, restarted.task_id, *restarted.replaced]))

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

    def delete(self, document_id: str, tenant: str, pipe: redis.client.Pipeline | None = None) -> None:
        """Remove the record from everywhere; with `pipe`, only queue the writes on it.

        The document is remembered, with every task id it had, until every run that
        might still write for it has ended: then the gateway's sweep removes its storage
        folder once more (a write that raced the delete) and what Redis keeps per task
        id (its owner, Celery's results), which those runs may have written after the
        delete (docflow.gateway.recovery.sweep_deleted).
        """
        key = self._doc_key(document_id)
        if pipe is not None:
            self._queue_delete(pipe, document_id, tenant, self._existing(self.redis, key))
            return

        def write(watched) -> None:  # the task ids read and the record deleted atomically
            existing = self._existing(watched, key)
            watched.multi()
            self._queue_delete(watched, document_id, tenant, existing)

        self.redis.transaction(write, key)

    @staticmethod
    def _existing(client, key: str) -> "_Existing":
        version, task_id, previous = client.hmget(key, "version", "task_id", "previous_task_ids")
        task_ids = [*(previous or "").split(), *([task_id] if task_id else [])]
        return _Existing(version=version, task_ids=task_ids)

    def _queue_delete(self, pipe, document_id: str, tenant: str, existing: "_Existing") -> None:
        task_ids = existing.task_ids
        if existing.version:  # one `deleted` event, not one per repeated delete
            pipe.xadd(self.events_key(tenant), deleted_entry(document_id, existing.version, utcnow()),
                      maxlen=self.events_max_len, approximate=True)
        pipe.delete(self._doc_key(document_id))
        pipe.zrem(self._tenant_key(tenant), document_id)
        for status in DocumentStatus:
            pipe.zrem(self._status_key(tenant, status), document_id)
        pipe.zrem(self.in_flight_key, document_id)
        member = f"{tenant}/{document_id}"
        pipe.zadd(self.deleted_key, {member: time.time()})
        if task_ids:
            pipe.hset(self.deleted_tasks_key, member, " ".join(task_ids))

    @property
    def deleted_key(self) -> str:
        """Documents deleted recently, as `tenant/document_id`, scored by when."""
        return f"{self.prefix}documents:deleted"

    @property
    def deleted_tasks_key(self) -> str:
        """The task ids of each recently deleted document (`tenant/document_id` -> ids)."""
        return f"{self.prefix}documents:deleted:tasks"

    def deleted_task_ids(self, documents: list[tuple[str, str]]) -> list[str]:
        """Every task id the given deleted documents had (current and earlier versions)."""
        if not documents:
            return []
        ids = self.redis.hmget(self.deleted_tasks_key, [f"{t}/{d}" for t, d in documents])
        return [task_id for value in ids if value for task_id in value.split()]

    def deleted_before(self, epoch: float, limit: int = 1000) -> list[tuple[str, str]]:
        """(tenant, document id) of documents deleted before `epoch`, oldest first."""
        members = self.redis.zrangebyscore(self.deleted_key, 0, epoch, start=0, num=limit)
        return [tuple(member.split("/", 1)) for member in members]

    def forget_deleted(self, documents: list[tuple[str, str]]) -> None:
        if documents:
            members = [f"{tenant}/{document_id}" for tenant, document_id in documents]
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(self.deleted_key, *members)
            pipe.hdel(self.deleted_tasks_key, *members)
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

    def set_metadata(self, document_id: str, tenant: str, metadata: dict[str, Any]) -> DocumentRecord | None:
        """Replace the document's metadata, whatever its status (PATCH); None when it does
        not exist or belongs to another tenant. The tenant is checked and the field written
        in one transaction, so a concurrent delete cannot be resurrected as a stub record."""
        key = self._doc_key(document_id)

        def write(pipe) -> None:
            if pipe.hget(key, "tenant") != tenant:
                raise LookupError(document_id)
            pipe.multi()
            pipe.hset(key, mapping={"metadata": _encode(metadata), "updated_at": utcnow().isoformat()})

        try:
            self.redis.transaction(write, key)
        except LookupError:
            return None
        return self.get_for_tenant(document_id, tenant)

    def version_of(self, document_id: str) -> int | None:
        """The document's current version; None once it is deleted."""
        version = self.redis.hget(self._doc_key(document_id), "version")
        return int(version) if version else None

    def is_current(self, document_id: str, version: int) -> bool:
        current, status = self.redis.hmget(self._doc_key(document_id), "version", "status")
        return current == str(version) and status not in FINAL_STATUSES

    def update(self, document_id: str, version: int, status: DocumentStatus | None = None,
               progress: int | None = None, **fields: Any) -> bool:
        """Apply a change if `version` is current and the document not final."""
        args: list[str] = [str(version), utcnow().isoformat(),
                           status.value if status else "",
                           "" if progress is None else str(max(0, min(100, int(progress)))),
                           _RANK_JSON]
        for name, value in fields.items():
            args += [name, _encode(value)]
        return bool(self._update(keys=[self._doc_key(document_id), self.in_flight_key], args=args))

    def complete(self, document_id: str, version: int, **fields: Any) -> bool:
        """The version is done and is what search serves from now on."""
        served = {"served_vectors": fields["vectors"]} if "vectors" in fields else {}
        return self.update(document_id, version, DocumentStatus.COMPLETED, 100,
                           completed_at=utcnow(), served_version=version, **served, **fields)

    def fail(self, document_id: str, version: int, error: DocumentError) -> bool:
        return self.update(document_id, version, DocumentStatus.FAILED, error=error,
                           completed_at=utcnow())


@dataclass(frozen=True)
class _Existing:
    """What a delete reads of the record first: its version (None: no record) and task ids."""

    version: str | None
    task_ids: list[str]


@dataclass(frozen=True)
class Restarted:
    """A new version started by `StatusStore.start_again`, and what it replaced."""

    document_id: str
    task_id: str
    version: int
    replaced: tuple[str, ...]
