"""Keeping a tenant's index healthy: when maintenance runs, and one run at a time.

Every index write (a document indexed, deleted or re-tagged) is a LanceDB commit:
a new fragment and a new table version. Left alone, searches slow down with every
fragment and old versions pile up (keeping deleted rows on disk). `Task.MAINTAIN`
(a worker of its own on `Queue.MAINTENANCE`, so its long runs never hold up a
document or a search) compacts, updates the indexes, builds the vector index once a
table is big enough, and removes old versions (`LanceDBStore.maintain`).

When: after index writes, `note_writes` counts them per tenant in Redis. Once
`DOCFLOW_INDEX_MAINTENANCE_WRITES` accumulated, a run is sent at once; otherwise the
first write of a quiet spell schedules one `DOCFLOW_INDEX_MAINTENANCE_DELAY_SECONDS`
later. Both are debounced with SET NX EX, so a burst of writes sends one or two
runs, not one per write. A run resets the count when it starts.

A run that leaves older versions behind (younger than the retention, so kept for
readers that may still use them) schedules one more run once they are past it
(`cleanup_later`, also SET NX EX: one such run pending per tenant). Without it a
tenant that wrote shortly before a delete and then went quiet kept the deleted rows
in an old version for good; with it they are gone within the delay plus twice
(retention + CLEANUP_MARGIN_SECONDS): 27 minutes with the defaults.

One run per tenant: a Redis lock (docflow.indexer.run_lock) whose TTL outlasts the task's hard
limit, so a run killed without releasing it cannot block its tenant for longer than
that. The lock holds the run's task id: the redelivery of a run killed midway
(acks_late) carries the same id and takes the lock over at once.
"""

from dataclasses import dataclass

import redis

from docflow.indexer import metrics as index_metrics
from docflow.indexer import run_lock
from docflow.shared.settings import Settings

# How long after the retention a follow-up run comes: the versions it must remove are
# then past it for sure, and a run taking a little longer does not matter.
CLEANUP_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class MaintenancePolicy:
    """What a run does, from settings."""

    version_retention_seconds: int
    vector_index_min_rows: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "MaintenancePolicy":
        return cls(version_retention_seconds=settings.index_version_retention_seconds,
                   vector_index_min_rows=settings.vector_index_min_rows)


class MaintenanceSchedule:
    """The Redis side of maintenance: write counts, debounced triggers, the per-tenant lock."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.prefix = f"{settings.redis_key_prefix}index-maintenance:"
        self.writes_threshold = settings.index_maintenance_writes
        self.delay_seconds = settings.index_maintenance_delay_seconds
        # Above the hard limit: a killed run's lock expires on its own.
        self.lock_seconds = settings.maintain_time_limit + 60
        self.cleanup_delay_seconds = settings.index_version_retention_seconds + CLEANUP_MARGIN_SECONDS

    def _key(self, kind: str, tenant: str) -> str:
        return f"{self.prefix}{kind}:{tenant}"

    def note_writes(self, tenant: str, count: int = 1) -> tuple[bool, bool]:
        """Count writes; returns (run now, run later): which runs the caller must send."""
        index_metrics.INDEX_WRITES.labels(tenant).inc(count)  # first: the writes happened even if Redis fails
        pipe = self.redis.pipeline(transaction=False)
        pipe.incrby(self._key("writes", tenant), count)
        pipe.set(self._key("due", tenant), 1, nx=True, ex=self.delay_seconds)
        writes, later = pipe.execute()
        now = False
        if writes >= self.writes_threshold:
            # Debounced for the delay too: one immediate run per spell of heavy writing.
            now = bool(self.redis.set(self._key("now", tenant), 1, nx=True, ex=self.delay_seconds))
        return now, bool(later)

    def started(self, tenant: str) -> None:
        """A run begins: writes from now on count towards the next one."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self._key("writes", tenant))
        pipe.delete(self._key("now", tenant))
        pipe.execute()

    def cleanup_later(self, tenant: str) -> bool:
        """Whether the caller must send the run that removes the versions a run kept
        (those within the retention): True for one caller per `cleanup_delay_seconds`,
        so at most one such run per tenant is pending at a time."""
        return bool(self.redis.set(self._key("cleanup", tenant), 1, nx=True, ex=self.cleanup_delay_seconds))

    def acquire(self, tenant: str, run_id: str) -> bool:
        return run_lock.acquire(self.redis, self._key("lock", tenant), run_id, self.lock_seconds)

    def release(self, tenant: str, run_id: str) -> None:
        run_lock.release(self.redis, self._key("lock", tenant), run_id)

    def pending_writes(self, tenant: str) -> int:
        return int(self.redis.get(self._key("writes", tenant)) or 0)
