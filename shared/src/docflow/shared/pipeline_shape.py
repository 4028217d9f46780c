"""The document pipeline's shape: its stages in order, and the statuses a document moves
through. Defined once here; the chain (docflow.gateway.pipeline), the stage tasks'
status and progress (docflow.shared.stage_task), the status store's forward-only
order (docflow.shared.status) and the dead letters' replay (the gateway's
/v1/admin/dead-letters) all derive from it. The names themselves are in
docflow.shared.names.

A document starts `queued`, takes each stage's status while that stage runs (and the
stage's slice of the 0-100 progress bar), and ends in one of the final statuses.
Status and progress only move forward; the final statuses end every update.
"""

from dataclasses import dataclass
from enum import StrEnum

from docflow.shared.names import Stage, Task


class DocumentStatus(StrEnum):
    """A document's status, as the API reports it (its order is STATUS_ORDER)."""

    QUEUED = "queued"
    EXTRACTING = "extracting"
    EMBEDDING = "embedding"
    INDEXING = "indexing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class PipelineStage:
    stage: Stage
    # The task that runs the stage for a document, and returns the message for the next.
    task: Task
    # The document's status while the stage runs.
    status: DocumentStatus
    # The slice of the 0-100 progress bar the stage fills: (from, to).
    progress: tuple[int, int]


# The document pipeline, in order.
DOCUMENT_PIPELINE: tuple[PipelineStage, ...] = (
    PipelineStage(Stage.EXTRACT, Task.EXTRACT, DocumentStatus.EXTRACTING, (0, 40)),
    PipelineStage(Stage.EMBED, Task.EMBED, DocumentStatus.EMBEDDING, (40, 80)),
    PipelineStage(Stage.INDEX, Task.INDEX, DocumentStatus.INDEXING, (80, 100)),
)
PIPELINE_STAGE: dict[Stage, PipelineStage] = {step.stage: step for step in DOCUMENT_PIPELINE}
# What a replayed dead letter of a stage's task resumes the chain from (any other
# task's letter is re-sent as it was).
STAGE_OF_PIPELINE_TASK: dict[str, Stage] = {step.task.value: step.stage for step in DOCUMENT_PIPELINE}

FINAL_STATUSES = frozenset({DocumentStatus.COMPLETED, DocumentStatus.FAILED, DocumentStatus.CANCELLED})
# Forward order: queued, the stages' statuses in pipeline order, then the final ones.
STATUS_ORDER: tuple[DocumentStatus, ...] = (
    DocumentStatus.QUEUED,
    *(step.status for step in DOCUMENT_PIPELINE),
    DocumentStatus.COMPLETED, DocumentStatus.FAILED, DocumentStatus.CANCELLED,
)
# status -> its place in STATUS_ORDER (the status store's scripts refuse to go backwards).
STATUS_RANK: dict[str, int] = {status.value: rank for rank, status in enumerate(STATUS_ORDER)}
