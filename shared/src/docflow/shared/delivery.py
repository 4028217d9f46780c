"""What a worker does with a message when the normal path cannot: nothing is dropped.

Two extension points Celery documents, both used by every docflow worker:

- `DocflowRequest` (a task's `Request` class, in the worker's main process). When a
  task ends because Redis itself -- broker, result backend, status store -- was
  unreachable, the run did not fail; it could not be recorded. Celery would ack the
  message as failed (`task_acks_on_failure_or_timeout`); this requeues it instead.
  While Redis is down the requeue cannot be sent either, and the message stays in
  kombu's `unacked` hash (in Redis, so in its AOF) until the visibility timeout
  restores it. Either way the run is repeated: stages are idempotent, and
  DOCFLOW_MAX_DELIVERIES bounds the repeats. It also keeps Celery from acknowledging
  (so losing) a task it terminated because the broker connection dropped (see
  `_announce_cancelled`).

- `DeadLetteringConsumer` (the worker's `worker_consumer`). Celery drops a message
  it cannot decode or accept -- a serializer other than JSON (`accept_content`
  refuses pickle), a malformed body, an unknown task -- after logging it. This
  records each one as a dead letter first (not replayable: there is nothing to
  re-send), so an operator sees it in `GET /v1/admin/dead-letters`.
"""

from functools import cached_property
from typing import Any

import redis
import structlog
from billiard.einfo import ExceptionWithTraceback
from celery.concurrency.thread import TaskPool as ThreadPool
from celery.worker.consumer import Consumer
from celery.worker.request import Request
from celery.worker.state import task_ready
from kombu.exceptions import OperationalError

from docflow.shared.deadletters import MAX_BODY_EXCERPT_CHARS, DeadLetterStore
from docflow.shared.errors import ErrorCode
from docflow.shared.names import STAGE_OF_QUEUE
from docflow.shared.redis_connection import redis_client
from docflow.shared.settings import get_settings

log = structlog.get_logger(__name__)

# Redis itself unreachable (redis-py), or kombu giving up on a publish (a retry, the
# next stage of the chain) because of it.
REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError,
)


def is_redis_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    return isinstance(exc, REDIS_UNREACHABLE)


class DocflowRequest(Request):
    def cancel(self, pool, signal=None, emit_retry=True):
        """A thread cannot be stopped (the indexer's document worker runs a threads pool,
        which raises on terminate): the run goes on, and acknowledges its message only
        if it succeeds (acks_late); otherwise the message is redelivered."""
        if isinstance(pool, ThreadPool):
            return
        super().cancel(pool, signal=signal, emit_retry=emit_retry)

    def _announce_cancelled(self, emit_retry=True):
        """Celery terminates a running late-ack task when the broker connection drops
        (`worker_cancel_long_running_tasks_on_connection_loss`), leaving its message
        unacknowledged so it is redelivered. Recording the cancellation (a RETRY state
        in the result backend) needs Redis -- usually what was lost. When that raised,
        Celery never marked the request cancelled, later took the terminated pool
        process for a revoke and *acknowledged the message*: the document stayed in
        `embedding` forever after a Redis crash (test_faults_dependencies.py). So the
        request counts as cancelled whatever the bookkeeping manages."""
        try:
            super()._announce_cancelled(emit_retry=emit_retry)
        except Exception as exc:
            log.warning("could not record a task cancelled on connection loss; it will be redelivered",
                        task_id=self.id, error=str(exc))
        finally:
            self._already_cancelled = True

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        if self.task.acks_late and is_redis_unreachable(exc_info.exception):
            task_ready(self)
            log.warning("Redis unreachable during the task: requeueing it, not failing it",
                        task_id=self.id, task_name=self.name, error=str(exc_info.exception))
            # Logged, not raised, if Redis is still down: the message then waits in
            # the unacked hash for the visibility timeout.
            self.reject(requeue=True)
            return
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


def _text(body: Any) -> str:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body[:MAX_BODY_EXCERPT_CHARS]).decode("utf-8", "backslashreplace")
    return str(body)[:MAX_BODY_EXCERPT_CHARS]


class DeadLetteringConsumer(Consumer):
    """Celery's consumer, recording every message it refuses before refusing it."""

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        settings = get_settings()
        return DeadLetterStore(redis_client(settings, socket_connect_timeout=5, socket_timeout=5),
                               settings.redis_key_prefix)

    def record_refused(self, message, exc: BaseException | None, reason: str) -> None:
        try:
            headers = message.headers or {}
            delivery = message.delivery_info or {}
            queue = delivery.get("routing_key") or delivery.get("exchange") or ""
            error = f"{type(exc).__name__}: {exc}" if exc is not None else reason
            stage = STAGE_OF_QUEUE[queue].value if queue in STAGE_OF_QUEUE else "unknown"
            letter = self.dead_letters.add(
                task_name=str(headers.get("task") or "unknown"),
                task_id=str(headers.get("id") or message.properties.get("correlation_id") or ""),
                queue=queue, args=[], stage=stage,
                error_code=ErrorCode.UNDECODABLE_MESSAGE.value,
                error_message=f"{reason}: {error}"[:MAX_BODY_EXCERPT_CHARS], attempts=1,
                replayable=False, content_type=message.content_type, body_excerpt=_text(message.body),
            )
            log.error("refused a message; recorded as a dead letter", reason=reason,
                      dead_letter_id=letter.id, queue=queue, content_type=message.content_type)
        except Exception as record_error:  # never let bookkeeping stop the consumer
            log.error("could not record a refused message", reason=reason, error=str(record_error))

    def on_decode_error(self, message, exc):
        self.record_refused(message, exc, "the message body cannot be decoded")
        return super().on_decode_error(message, exc)

    def on_unknown_message(self, body, message):
        self.record_refused(message, None, "not a Celery task message")
        return super().on_unknown_message(body, message)

    def on_unknown_task(self, body, message, exc):
        self.record_refused(message, exc, "no such task on this worker")
        return super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body, message, exc):
        self.record_refused(message, exc, "the message was refused (content type or format)")
        return super().on_invalid_task(body, message, exc)
