"""kombu's Redis layout, in one place: its key names and how a stored message decodes.

kombu's Redis transport keeps
- a queue's waiting messages in the list named after the queue, each a JSON envelope
  `{"body", "headers", "properties", ...}`; the body is the Celery message
  (`[args, kwargs, embed]`, base64-encoded when `properties.body_encoding` says so);
- every delivered, unacknowledged message in the hash `unacked` (delivery tag ->
  JSON `[envelope, exchange, routing_key]`) and its delivery time in the sorted set
  `unacked_index` (delivery tag -> epoch seconds), which kombu's own restore reads
  (older than the visibility timeout: put back on its queue) under the lock
  `unacked_mutex`.

The key names are read from kombu's own Channel class, so an upgrade that renamed
them changes them here for every reader: the admin view and metrics
(docflow.shared.queue_stats) and the gateway's recovery (docflow.gateway.recovery).
shared/tests/test_kombu_layout.py checks the decoder against a message kombu itself
stored. (No `global_keyprefix` transport option is set; one would prefix these keys.)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from kombu.transport.redis import Channel

from docflow.shared.tracing import ENQUEUED_AT

UNACKED_KEY: str = Channel.unacked_key
UNACKED_INDEX_KEY: str = Channel.unacked_index_key
UNACKED_MUTEX_KEY: str = Channel.unacked_mutex_key
UNACKED_MUTEX_EXPIRE: int = Channel.unacked_mutex_expire
_PAGE = 500


@dataclass(frozen=True)
class Envelope:
    """What docflow reads of one stored message (a queue entry or an unacked entry)."""

    task: str | None = None
    task_id: str | None = None
    # The queue it was published to (Celery routes with routing key = queue name);
    # known for unacked entries, which keep it beside the envelope.
    queue: str | None = None
    # Epoch seconds; None when the header is missing or malformed.
    eta: float | None = None
    enqueued_at: float | None = None
    # The decoded Celery body ([args, kwargs, embed]); None if it did not decode.
    body: Any = field(default=None, compare=False)

    @property
    def root_task_id(self) -> str | None:
        """The pipeline task id a stage task id derives from (`<task id>.<stage>`)."""
        return self.task_id.split(".", 1)[0] if self.task_id else None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _epoch(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def _body(message: dict[str, Any]) -> Any:
    try:
        body = message.get("body", "")
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return json.loads(body)
    except (TypeError, ValueError):
        return None


def decode(raw: str | bytes | None, with_body: bool = True) -> Envelope | None:
    """An envelope as kombu stores it, in a queue's list or in the unacked hash; None
    when it is not one (another producer's, or damaged: not ours to judge)."""
    if raw is None:
        return None
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    queue = None
    if isinstance(message, list):  # an unacked entry: [envelope, exchange, routing key]
        if len(message) < 3 or not isinstance(message[0], dict):
            return None
        message, queue = message[0], message[2] if isinstance(message[2], str) else None
    if not isinstance(message, dict):
        return None
    headers = message.get("headers") or {}
    if not isinstance(headers, dict):
        headers = {}
    task_id = headers.get("id")
    return Envelope(
        task=headers.get("task") if isinstance(headers.get("task"), str) else None,
        task_id=task_id if isinstance(task_id, str) else None,
        queue=queue,
        eta=_epoch(headers.get("eta")),
        enqueued_at=_float(headers.get(ENQUEUED_AT)),
        body=_body(message) if with_body else None,
    )


def queued(client: redis.Redis, queue: str) -> Iterator[str | bytes]:
    """The raw messages waiting in a queue's list, a page at a time."""
    start = 0
    while batch := client.lrange(queue, start, start + _PAGE - 1):
        yield from batch
        start += _PAGE


def unacked(client: redis.Redis) -> Iterator[tuple[str | bytes, str | bytes]]:
    """(delivery tag, raw entry) of every delivered, unacknowledged message."""
    yield from client.hscan_iter(UNACKED_KEY, count=_PAGE)


def delivered_before(client: redis.Redis, epoch: float) -> list[tuple[str, float]]:
    """(delivery tag, delivered at) of the unacked deliveries made before `epoch`."""
    return [(tag.decode() if isinstance(tag, bytes) else tag, score)
            for tag, score in client.zrange(UNACKED_INDEX_KEY, 0, epoch, byscore=True, withscores=True)]


# Put one unacked delivery back on its queue, only if it is still exactly the entry the
# caller judged (not acked, not restored by kombu meanwhile): all or nothing, in one
# step, so a delivery is never both acked and requeued, nor requeued twice.
# KEYS: unacked hash, unacked index, queue; ARGV: tag, entry as read, payload to push.
_RESTORE_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
"""


def restore(client: redis.Redis, tag: str, raw: str | bytes, queues: frozenset[str]) -> bool:
    """Requeue an unacked delivery as kombu's own restore does (marked redelivered, pushed
    to the end its consumers take next), if its queue is one of `queues`; False when it
    is not, or when it was acked or restored meanwhile."""
    try:
        payload, _exchange, routing_key = json.loads(raw)[:3]
    except (TypeError, ValueError):
        return False
    # docflow routes every task by a routing key equal to its queue's name (TASK_ROUTES).
    if not isinstance(payload, dict) or routing_key not in queues:
        return False
    try:
        payload["headers"]["redelivered"] = True
        payload["properties"]["delivery_info"]["redelivered"] = True
    except (KeyError, TypeError):
        pass
    keys = [UNACKED_KEY, UNACKED_INDEX_KEY, routing_key]
    return bool(client.eval(_RESTORE_LUA, len(keys), *keys, tag, raw, json.dumps(payload)))
