"""The base class of every docflow task: retries, failure bookkeeping, dead letters.

Retries use Celery's own autoretry with exponential backoff and full jitter for
`TransientError` and soft time-outs only; a `PermanentError` fails at once. When a
task finally fails its document is marked `failed` with a code, message and stage,
and a task that failed for a reason other than its input is dead-lettered so an
operator can replay it.

Two things end a run without it being the task's failure. Redis unreachable mid-run:
nothing is recorded and the message is requeued (`docflow.shared.delivery`). And a
message delivered more than DOCFLOW_MAX_DELIVERIES times -- its runs keep dying, e.g.
a document that gets its worker OOM-killed every time, which `acks_late` plus
`task_reject_on_worker_lost` would otherwise redeliver forever -- is dead-lettered
with `redelivery_limit` at the start of its next run instead of being run again.
"""

import time
from functools import cached_property
from typing import Any

import redis
import structlog
from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded

from docflow.shared import metrics
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.delivery import is_redis_unreachable
from docflow.shared.errors import ErrorCode, PermanentError, PipelineError, TransientError
from docflow.shared.messages import PipelineMessage, artifact_prefix
from docflow.shared.names import QUEUE_OF_STAGE, STAGE_OF_TASK, Stage, queues_of_stage
from docflow.shared.pipeline_shape import PIPELINE_STAGE
from docflow.shared.redis_connection import redis_client
from docflow.shared.settings import Settings, get_settings
from docflow.shared.status import DocumentError, DocumentStatus, StatusStore
from docflow.shared.storage import Storage, open_storage

log = structlog.get_logger(__name__)


def classify(exc: BaseException) -> tuple[ErrorCode, str, bool]:
    """(code, message, worth replaying) for any exception a task ended with."""
    if isinstance(exc, PipelineError):
        return exc.code, exc.message, not isinstance(exc, PermanentError)
    if isinstance(exc, (SoftTimeLimitExceeded, TimeLimitExceeded)):
        return ErrorCode.TIMEOUT, f"task exceeded its time limit ({exc})", True
    return ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", True


class DocflowTask(Task):
    """Lazy per-process resources (opened after fork) and the retry policy."""

    autoretry_for = (TransientError, SoftTimeLimitExceeded)
    # Redis unreachable mid-run: requeue instead of failing (docflow.shared.delivery).
    Request = "docflow.shared.delivery:DocflowRequest"
    # Query tasks set this False: replaying a search after its caller is gone
    # computes an answer nobody reads.
    dead_letter_on_failure = True

    @property
    def stage(self) -> Stage:
        return STAGE_OF_TASK[self.name]

    @cached_property
    def settings(self) -> Settings:
        return get_settings()

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return self.settings.max_retries

    # Celery's autoretry reads these three once, when the task is registered.
    @property
    def retry_backoff(self) -> int:  # type: ignore[override]
        return self.settings.retry_backoff

    @property
    def retry_backoff_max(self) -> int:  # type: ignore[override]
        return self.settings.retry_backoff_max

    @property
    def retry_jitter(self) -> bool:  # type: ignore[override]
        return self.settings.retry_jitter

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings)

    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.settings)

    @cached_property
    def status(self) -> StatusStore:
        return StatusStore(self.redis, self.settings.redis_key_prefix, self.settings.events_stream_max_len,
                           self.settings.notifications_stream_max_len)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.redis, self.settings.redis_key_prefix)

    def reset_resources(self) -> None:
        """Forget the per-process resources (tests change settings between runs)."""
        for name in ("settings", "redis", "storage", "status", "dead_letters"):
            self.__dict__.pop(name, None)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if is_redis_unreachable(exc):
            return  # not the task's failure: DocflowRequest requeues the message
        code, message, replayable = classify(exc)
        log.error("task failed", error_code=code.value, error=message, task_id=task_id)
        if replayable and self.dead_letter_on_failure:
            self.dead_letter(task_id, args, code, message, self.attempts_of(args))

    def attempts_of(self, args: Any) -> int:
        """Runs so far. (A hard time limit's on_failure runs in the worker's main
        process, where no request is bound: retries reads 0 there.)"""
        return (self.request.retries or 0) + 1

    def dead_letter(self, task_id: str, args: Any, code: ErrorCode, message: str, attempts: int) -> None:
        document = _message_or_none(args)
        self.dead_letters.add(
            task_name=self.name, task_id=task_id or "", queue=self.delivered_from(),
            args=list(args), stage=self.stage.value, error_code=code.value,
            error_message=message, attempts=attempts,
            document_id=document.document_id if document else None,
            tenant=document.tenant if document else None,
        )

    def delivered_from(self) -> str:
        """The queue this run's message came from -- the document's lane, which a dead
        letter's replay resumes in -- or the stage's document queue when unknown (a hard
        time limit's on_failure runs where no request is bound)."""
        delivery = getattr(self.request, "delivery_info", None) or {}
        queue = delivery.get("routing_key")
        if queue in {q.value for q in queues_of_stage(self.stage)}:
            return queue
        return QUEUE_OF_STAGE[self.stage].value


def _message_or_none(args: Any) -> PipelineMessage | None:
    try:
        return PipelineMessage.model_validate(args[0])
    except Exception:
        return None


class StageTask(DocflowTask):
    """A pipeline stage: runs only for the document's current version, reports progress."""

    def begin(self, message: dict[str, Any]) -> PipelineMessage:
        """Validate the message and claim this run; stale runs are dropped (Ignore)."""
        return self.begin_run(message)[0]

    def begin_run(self, message: dict[str, Any]) -> tuple[PipelineMessage, int]:
        """`begin`, also returning which run of this stage for this version it is (1 = the
        first: no earlier run can have written anything)."""
        msg = PipelineMessage.model_validate(message)
        structlog.contextvars.bind_contextvars(document_id=msg.document_id, version=msg.version,
                                               stage=self.stage.value)
        # Counting the run and moving the status forward share one round trip.
        shape = PIPELINE_STAGE[self.stage]
        attempt = self.status.begin_stage(msg.document_id, msg.version, self.stage.value,
                                          shape.status, shape.progress[0])
        if not attempt:
            log.info("skipping stale run: document deleted, reprocessed or already final")
            raise Ignore()
        if attempt > self.settings.max_deliveries:
            self._give_up_on_a_poison_message(msg, attempt)
            raise Ignore()  # acked: the chain stops here, the record says why
        return msg, attempt

    def store_artifacts(self, msg: PipelineMessage, artifacts: dict[str, bytes]) -> bool:
        """Write this run's artifacts (storage key -> bytes), unless the run is stale.

        Delete means gone: a run of a document deleted (or reprocessed, cancelled, failed)
        meanwhile writes nothing. Checked before writing; and as a delete can land while
        a big artifact is being written, checked again after: if the document is gone or
        at another version by then, what this run wrote is removed again. (A worker
        killed between the two leaves it to the gateway's sweep, which deletes a deleted
        document's folder once more after every run of it has ended.) Returns False when
        the run is stale and nothing of it is left.
        """
        if not self.status.is_current(msg.document_id, msg.version):
            log.info("stale run: not writing its artifacts", artifacts=len(artifacts))
            return False
        written = []
        try:
            for key, data in artifacts.items():
                self.storage.put(key, data)
                written.append(key)
        finally:
            if self.status.version_of(msg.document_id) != msg.version:
                for key in written:
                    self.storage.delete_prefix(key)
                log.info("document deleted or reprocessed while its artifacts were written; removed them",
                         artifacts=len(written))
                written = []
        return bool(written) or not artifacts

    def drop_older_versions_artifacts(self, msg: PipelineMessage) -> int:
        """Remove the artifacts of every version before `msg`'s (called as it completes: a
        reprocess kept every earlier version's files until the document was deleted).
        The record remembers how far it got, so each version's folder is removed once."""
        record = self.status.get(msg.document_id)
        if record is None or record.version != msg.version:
            return 0
        prefix = artifact_prefix(msg.tenant, msg.document_id)
        removed = sum(self.storage.delete_prefix(f"{prefix}v{version}/")
                      for version in range(record.artifacts_from, msg.version))
        self.status.update(msg.document_id, msg.version, artifacts_from=msg.version)
        return removed

    def report(self, msg: PipelineMessage, done: float, total: float, **counts: Any) -> bool:
        """Progress within this stage (done of total) plus any counts to record.

        False if the run is stale (document deleted, reprocessed or final): the same
        round trip tells a long task whether to go on.
        """
        low, high = PIPELINE_STAGE[self.stage].progress
        fraction = done / total if total else 1.0
        return self.status.update(msg.document_id, msg.version,
                                  progress=int(low + fraction * (high - low)), **counts)

    def _give_up_on_a_poison_message(self, msg: PipelineMessage, attempt: int) -> None:
        runs = attempt - 1
        message = (f"the {self.stage.value} stage ran {runs} times for this document without "
                   f"finishing (DOCFLOW_MAX_DELIVERIES={self.settings.max_deliveries}); its runs "
                   "keep dying (worker killed, crashed or out of memory), so it is not run again")
        log.error("poison message dead-lettered", attempts=runs)
        self.dead_letter(self.request.id, [msg.model_dump()], ErrorCode.REDELIVERY_LIMIT, message, runs)
        if self.status.fail(msg.document_id, msg.version, DocumentError(
                code=ErrorCode.REDELIVERY_LIMIT, message=message, stage=self.stage.value)):
            metrics.document_finished(DocumentStatus.FAILED.value, msg.content_type, None, time.time())

    def attempts_of(self, args: Any) -> int:
        msg = _message_or_none(args)
        record = self.status.get(msg.document_id) if msg else None
        recorded = record.attempts if record and record.version == msg.version else 0
        return max(super().attempts_of(args), recorded)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        msg = _message_or_none(args)
        if msg is None or is_redis_unreachable(exc):
            return
        code, message, _ = classify(exc)
        if self.status.fail(msg.document_id, msg.version,
                            DocumentError(code=code, message=message, stage=self.stage.value)):
            metrics.document_finished(DocumentStatus.FAILED.value, msg.content_type, None, time.time())
