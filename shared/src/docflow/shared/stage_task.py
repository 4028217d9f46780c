"""The base class of every docflow task: retries, failure bookkeeping, dead letters.

Retries use Celery's own autoretry with exponential backoff and full jitter for
`TransientError` and soft time-outs only; a `PermanentError` fails at once. When a
task finally fails its document is marked `failed` with a code, message and stage,
and a task that failed for a reason other than its input is dead-lettered so an
operator can replay it.
"""

from functools import cached_property
from typing import Any

import redis
import structlog
from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded

from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import ErrorCode, PermanentError, PipelineError, TransientError
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import QUEUE_OF_STAGE, STAGE_OF_TASK, Stage
from docflow.shared.settings import Settings, get_settings
from docflow.shared.status import DocumentError, DocumentStatus, StatusStore
from docflow.shared.storage import Storage, open_storage

log = structlog.get_logger(__name__)

STATUS_OF_STAGE = {
    Stage.EXTRACT: DocumentStatus.EXTRACTING,
    Stage.EMBED: DocumentStatus.EMBEDDING,
    Stage.INDEX: DocumentStatus.INDEXING,
}
# The slice of the 0-100 progress bar each stage fills.
PROGRESS_SPAN = {Stage.EXTRACT: (0, 40), Stage.EMBED: (40, 80), Stage.INDEX: (80, 100)}


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
    retry_backoff = 2
    retry_jitter = True
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

    @property
    def retry_backoff_max(self) -> int:  # type: ignore[override]
        return self.settings.retry_backoff_max

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, decode_responses=True)

    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.settings)

    @cached_property
    def status(self) -> StatusStore:
        return StatusStore(self.redis, self.settings.redis_key_prefix)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.redis, self.settings.redis_key_prefix)

    def reset_resources(self) -> None:
        """Forget the per-process resources (tests change settings between runs)."""
        for name in ("settings", "redis", "storage", "status", "dead_letters"):
            self.__dict__.pop(name, None)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        code, message, replayable = classify(exc)
        log.error("task failed", error_code=code.value, error=message, task_id=task_id)
        if replayable and self.dead_letter_on_failure:
            document = _message_or_none(args)
            self.dead_letters.add(
                task_name=self.name, task_id=task_id, queue=QUEUE_OF_STAGE[self.stage].value,
                args=list(args), stage=self.stage.value, error_code=code.value,
                error_message=message, attempts=self.request.retries + 1,
                document_id=document.document_id if document else None,
                tenant=document.tenant if document else None,
            )


def _message_or_none(args: Any) -> PipelineMessage | None:
    try:
        return PipelineMessage.model_validate(args[0])
    except Exception:
        return None


class StageTask(DocflowTask):
    """A pipeline stage: runs only for the document's current version, reports progress."""

    def begin(self, message: dict[str, Any]) -> PipelineMessage:
        """Validate the message and claim this run; stale runs are dropped (Ignore)."""
        msg = PipelineMessage.model_validate(message)
        structlog.contextvars.bind_contextvars(document_id=msg.document_id, version=msg.version,
                                               stage=self.stage.value)
        if not self.status.begin_attempt(msg.document_id, msg.version, self.stage.value):
            log.info("skipping stale run: document deleted, reprocessed or already final")
            raise Ignore()
        self.status.update(msg.document_id, msg.version, STATUS_OF_STAGE[self.stage],
                           PROGRESS_SPAN[self.stage][0])
        return msg

    def report(self, msg: PipelineMessage, done: float, total: float, **counts: Any) -> None:
        """Progress within this stage (done of total) plus any counts to record."""
        low, high = PROGRESS_SPAN[self.stage]
        fraction = done / total if total else 1.0
        self.status.update(msg.document_id, msg.version,
                           progress=int(low + fraction * (high - low)), **counts)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        msg = _message_or_none(args)
        if msg is None:
            return
        code, message, _ = classify(exc)
        self.status.fail(msg.document_id, msg.version,
                         DocumentError(code=code, message=message, stage=self.stage.value))
