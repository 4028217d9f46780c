"""Re-embedding a tenant: which index generation is active, and the job that builds the next.

docs/architecture.md, "Re-embedding", has the design; this module is its Redis side,
shared by the gateway (starts a job, reads its progress, reads the active generation
for every search) and the indexer (runs the job, picks where an index write goes).

- **Generation.** A tenant's index is a numbered generation: its LanceDB table (or
  Pinecone namespace) is `table_name(tenant, generation)`, generation 0 being the name
  every tenant had before re-embedding existed. The active one, and the model its
  vectors come from, is the pointer hash `index:<tenant>` (absent: generation 0, model
  unknown). Searches read it; only the switch writes it.
- **Job.** `reembed:<tenant>` holds one job (the last one): its state, the generation it
  builds (`to`) from the active one (`from`), its walk cursor and timestamps. Beside it
  four sets keep the documents sent, done and failed (each id once: a redelivered task
  counts nothing twice) and those to redo (completed by the ordinary pipeline into the
  old generation while the job ran).
- **Switch.** One Lua script checks that nothing is left (walk finished, no redo, every
  sent document done, none failed) and moves the pointer: atomic with the index
  task's `after_write`, which either notes a redo before the switch (so the switch
  waits) or learns that it wrote a generation no longer active (and sends the
  document to the new one itself).
"""

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict


class ReembedState(StrEnum):
    RUNNING = "running"
    # Every document is in the new generation and searches use it.
    COMPLETED = "completed"
    # Some document could not be re-embedded: the old generation stays active.
    FAILED = "failed"


class ReembedMessage(BaseModel):
    """One document's re-embedding, from the embedder to the indexer (a claim check like
    PipelineMessage: keys, never vectors). `generation` is where its vectors go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    document_id: str
    version: int
    generation: int
    chunks_key: str
    embeddings_key: str | None = None
    embedding_model: str | None = None
    embedding_runtime: str | None = None


def reembedded_artifact(generation: int) -> str:
    """The re-embedded vectors' artifact beside a version's `embeddings.npy` (which keeps
    the vectors the document was completed with); removed once indexed."""
    return f"embeddings.g{int(generation)}.npy"


@dataclass(frozen=True)
class ActiveIndex:
    generation: int
    model: str | None  # None: unknown (a tenant never re-embedded); queries use the embedder's


@dataclass(frozen=True)
class JobProgress:
    tenant: str
    state: ReembedState
    from_generation: int
    to_generation: int
    total: int
    done: int
    failed: int
    started_at: float
    finished_at: float | None
    model: str | None
    error: str | None


# Starts a job unless one runs: resets its sets and writes its record in one step. The
# new generation is one no job used before (a failed job's table may still be written by
# a late task: the new job drops it, as `leftover`, but never builds in it).
_START_LUA = """
local old = redis.call('HMGET', KEYS[1], 'state', 'to')
if old[1] == 'running' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local active = tonumber(redis.call('HGET', KEYS[6], 'generation') or '0')
local last = tonumber(old[2] or '0')
local target = math.max(active, last) + 1
redis.call('HSET', KEYS[1], 'state', 'running', 'from', active, 'to', target,
           'started_at', ARGV[1], 'cursor_score', '-inf', 'cursor_id', '', 'walked', '0',
           'remaining', redis.call('ZCARD', KEYS[7]))
if last > active then redis.call('HSET', KEYS[1], 'leftover', last) end
return target
"""

# After an ordinary index write into generation ARGV[2] of document ARGV[1]: 'late' if
# that generation is no longer the active one (a switch happened meanwhile), 'redo' if
# a job runs towards another generation (the switch then waits for the redo), else ''.
_AFTER_WRITE_LUA = """
local active = tonumber(redis.call('HGET', KEYS[3], 'generation') or '0')
local written = tonumber(ARGV[2])
if written < active then return 'late' end
local job = redis.call('HMGET', KEYS[1], 'state', 'to')
if job[1] == 'running' and tonumber(job[2]) ~= written then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 'redo'
end
return ''
"""

# The switch: only when nothing is left to do; moves the pointer and ends the job.
_SWITCH_LUA = """
local job = redis.call('HMGET', KEYS[1], 'state', 'walked', 'to', 'model')
if job[1] ~= 'running' or job[2] ~= '1' then return 0 end
if redis.call('SCARD', KEYS[2]) > 0 or redis.call('SCARD', KEYS[5]) > 0 then return 0 end
if redis.call('SCARD', KEYS[4]) ~= redis.call('SCARD', KEYS[3]) then return 0 end
if job[4] then
  redis.call('HSET', KEYS[6], 'generation', job[3], 'model', job[4])
else
  redis.call('HSET', KEYS[6], 'generation', job[3])
  redis.call('HDEL', KEYS[6], 'model')
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', ARGV[1])
return 1
"""


class Reembeds:
    """The Redis side of re-embedding, for one key prefix (settings.redis_key_prefix)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._start = client.register_script(_START_LUA)
        self._after_write = client.register_script(_AFTER_WRITE_LUA)
        self._switch = client.register_script(_SWITCH_LUA)

    # --- key names (the one place they are spelled) ------------------------------------
    def pointer_key(self, tenant: str) -> str:
        return f"{self.prefix}index:{tenant}"

    def job_key(self, tenant: str) -> str:
        return f"{self.prefix}reembed:{tenant}"

    def set_key(self, tenant: str, kind: str) -> str:
        """`sent`, `done`, `failed` or `redo`: document ids of the tenant's job."""
        return f"{self.prefix}reembed:{tenant}:{kind}"

    def lock_key(self, tenant: str) -> str:
        return f"{self.prefix}reembed:{tenant}:lock"

    def _sets(self, tenant: str) -> list[str]:
        return [self.set_key(tenant, kind) for kind in ("sent", "done", "failed", "redo")]

    # --- the active generation ---------------------------------------------------------
    def active(self, tenant: str) -> ActiveIndex:
        generation, model = self.redis.hmget(self.pointer_key(tenant), "generation", "model")
        return ActiveIndex(int(generation or 0), model or None)

    def record_active_model(self, tenant: str, model: str) -> None:
        """The active generation's model, once the indexer has read it from its table (a
        tenant never re-embedded has none recorded): searches embed with it from now on."""
        self.redis.hsetnx(self.pointer_key(tenant), "model", model)

    def live_generations(self, tenant: str) -> list[int]:
        """Where a document's vectors may be: the active generation, and the one a running
        job builds (deletes and metadata changes go to both)."""
        active = self.active(tenant).generation
        job = self.job(tenant)
        if job is not None and job.state is ReembedState.RUNNING and job.to_generation != active:
            return [active, job.to_generation]
        return [active]

    # --- the job ------------------------------------------------------------------------
    def start(self, tenant: str, documents_key: str) -> int | None:
        """Start a job; its target generation, or None if one is already running.
        `documents_key`: the tenant's documents (StatusStore.documents_key), all of which
        the job's walk will look at (its first `total`)."""
        keys = [self.job_key(tenant), *self._sets(tenant), self.pointer_key(tenant), documents_key]
        target = int(self._start(keys=keys, args=[repr(time.time())]))
        return target or None

    def fields(self, tenant: str) -> dict[str, str]:
        return self.redis.hgetall(self.job_key(tenant))

    def job(self, tenant: str) -> JobProgress | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.job_key(tenant))
        for key in self._sets(tenant):
            pipe.scard(key)
        raw, sent, done, failed, redo = pipe.execute()
        if not raw:
            return None
        finished = raw.get("finished_at")
        # Not yet sent: the documents the walk has still to reach and those to redo
        # (`total` grows while documents complete during the job).
        pending = redo + (0 if raw.get("walked") == "1" else int(raw.get("remaining", 0)))
        return JobProgress(tenant=tenant, state=ReembedState(raw["state"]), from_generation=int(raw["from"]),
                           to_generation=int(raw["to"]), total=sent + pending, done=done, failed=failed,
                           started_at=float(raw["started_at"]),
                           finished_at=float(finished) if finished else None,
                           model=raw.get("model") or None, error=raw.get("error") or None)

    def update(self, tenant: str, **fields: str | int | float) -> None:
        self.redis.hset(self.job_key(tenant), mapping={name: str(value) for name, value in fields.items()})

    def note_sent(self, tenant: str, document_ids: list[str]) -> None:
        """Sent (again): counted as not done until its index task says so."""
        if document_ids:
            pipe = self.redis.pipeline(transaction=True)
            pipe.srem(self.set_key(tenant, "done"), *document_ids)
            pipe.srem(self.set_key(tenant, "failed"), *document_ids)
            pipe.sadd(self.set_key(tenant, "sent"), *document_ids)
            pipe.execute()

    def note_done(self, tenant: str, document_id: str, model: str | None = None) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(self.set_key(tenant, "done"), document_id)
        if model:  # the new generation's model, for the pointer at the switch
            pipe.hset(self.job_key(tenant), "model", model)
        pipe.execute()

    def note_failed(self, tenant: str, document_id: str, reason: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(self.set_key(tenant, "failed"), document_id)
        pipe.hset(self.job_key(tenant), "error", json.dumps({"document_id": document_id, "reason": reason}))
        pipe.execute()

    def counts(self, msg: ReembedMessage) -> bool:
        """Whether the running job counts this document's re-embed (not a late write's own
        re-embed into the active generation, nor one of a job that has ended)."""
        job = self.job(msg.tenant)
        return job is not None and job.state is ReembedState.RUNNING and job.to_generation == msg.generation

    def note_task_failure(self, args: Any, exc: BaseException) -> None:
        """A re-embed task (embedder's or indexer's) failed for good: its job counts the
        document as failed, if it counts it at all (the tasks' shared on_failure)."""
        try:
            msg = ReembedMessage.model_validate(args[0])
        except Exception:
            return
        if self.counts(msg):
            self.note_failed(msg.tenant, msg.document_id, f"{type(exc).__name__}: {exc}")

    def in_flight(self, tenant: str) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for kind in ("sent", "done", "failed"):
            pipe.scard(self.set_key(tenant, kind))
        sent, done, failed = pipe.execute()
        return max(0, sent - done - failed)

    def redo_batch(self, tenant: str, limit: int) -> list[str]:
        """Documents to send again (read, not popped: `forget_redo` once they are sent, so a
        crash in between sends them twice rather than never)."""
        return self.redis.srandmember(self.set_key(tenant, "redo"), limit) or []

    def forget_redo(self, tenant: str, document_ids: list[str]) -> None:
        if document_ids:
            self.redis.srem(self.set_key(tenant, "redo"), *document_ids)

    def after_write(self, tenant: str, document_id: str, generation: int) -> str:
        """After the ordinary pipeline indexed a document into `generation`: 'late' (the
        generation is no longer active: send the document to the active one), 'redo'
        (noted for the running job), or ''."""
        keys = [self.job_key(tenant), self.set_key(tenant, "redo"), self.pointer_key(tenant)]
        return self._after_write(keys=keys, args=[document_id, generation]) or ""

    def switch(self, tenant: str) -> bool:
        """Make the job's generation the active one, if nothing is left; True if it did."""
        keys = [self.job_key(tenant), self.set_key(tenant, "redo"), self.set_key(tenant, "sent"),
                self.set_key(tenant, "done"), self.set_key(tenant, "failed"), self.pointer_key(tenant)]
        return bool(self._switch(keys=keys, args=[repr(time.time())]))

    def fail(self, tenant: str, error: str) -> None:
        self.update(tenant, state=ReembedState.FAILED.value, finished_at=repr(time.time()), error=error)
