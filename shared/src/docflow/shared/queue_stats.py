"""What waits in each queue (documents' and searches') and what is being worked on,
read from Redis as KEDA and kombu see it.

- Backlog: `LLEN <queue>`, the number KEDA's Redis list scaler scales on. kombu keeps
  a queue's pending messages in the list named after the queue (one priority step,
  see celery_app.py), so this is the whole backlog.
- In flight: kombu's `unacked` hash holds every delivered but unacknowledged message
  as JSON `[message, exchange, routing_key]` under its delivery tag. With acks_late
  and prefetch off that is exactly the tasks running (plus retries waiting for their
  ETA, which a worker holds the same way).
- Oldest waiting message: kombu LPUSHes and workers pop from the right end, so the
  oldest message is `LINDEX <queue> -1`; its `enqueued_at` header (stamped by
  docflow.shared.tracing at publish) gives its age. A message without the header
  (published by another producer) leaves the age unknown.
"""

import time
from collections import Counter
from dataclasses import dataclass

import redis

from docflow.shared import kombu_layout
from docflow.shared.names import STAGE_OF_QUEUE, Stage

# kombu's key names and envelope decoding live in docflow.shared.kombu_layout.
UNACKED_KEY = kombu_layout.UNACKED_KEY


@dataclass(frozen=True)
class QueueStats:
    stage: Stage
    queue: str
    backlog: int
    in_flight: int
    oldest_age_seconds: float | None


def message_enqueued_at(raw: str | bytes | None) -> float | None:
    """The `enqueued_at` header of a raw kombu message (as stored in the list)."""
    envelope = kombu_layout.decode(raw, with_body=False)
    return envelope.enqueued_at if envelope else None


def _unacked_queue(raw: str | bytes) -> str | None:
    envelope = kombu_layout.decode(raw, with_body=False)
    return envelope.queue if envelope else None


def read_queue_stats(client: redis.Redis, now: float | None = None) -> list[QueueStats]:
    """One round trip for every queue (documents' and searches'); raises redis errors as they come."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for queue in STAGE_OF_QUEUE:
        pipe.llen(queue.value)
        pipe.lindex(queue.value, -1)
    pipe.hvals(UNACKED_KEY)
    *per_queue, unacked = pipe.execute()
    in_flight = Counter(_unacked_queue(raw) for raw in unacked)
    stats = []
    for index, (named_queue, stage) in enumerate(STAGE_OF_QUEUE.items()):
        backlog, oldest = int(per_queue[2 * index]), per_queue[2 * index + 1]
        queue = named_queue.value
        enqueued_at = message_enqueued_at(oldest)
        if backlog == 0:
            age = 0.0
        elif enqueued_at is None:
            age = None
        else:
            age = max(0.0, now - enqueued_at)
        stats.append(QueueStats(stage=stage, queue=queue, backlog=backlog, in_flight=in_flight[queue],
                                oldest_age_seconds=age))
    return stats
