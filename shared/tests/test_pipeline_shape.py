"""The pipeline's shape, defined once: what derives from it agrees with it, and with what
the status store and the API have always said."""

from docflow.shared.names import KEY_PREFIX, STAGE_OF_TASK, Stage
from docflow.shared.pipeline_shape import (
    DOCUMENT_PIPELINE,
    FINAL_STATUSES,
    PIPELINE_STAGE,
    STAGE_OF_PIPELINE_TASK,
    STATUS_ORDER,
    STATUS_RANK,
    DocumentStatus,
)
from docflow.shared.settings import Settings


def test_every_stage_runs_once_in_order_with_its_own_task():
    assert [step.stage for step in DOCUMENT_PIPELINE] == [Stage.EXTRACT, Stage.EMBED, Stage.INDEX]
    assert all(STAGE_OF_TASK[step.task] is step.stage for step in DOCUMENT_PIPELINE)
    assert set(PIPELINE_STAGE) == set(Stage)


def test_progress_slices_fill_the_bar_in_order():
    bounds = [bound for step in DOCUMENT_PIPELINE for bound in step.progress]
    assert bounds[0] == 0 and bounds[-1] == 100
    assert bounds == sorted(bounds)
    assert [step.progress[0] for step in DOCUMENT_PIPELINE[1:]] == [step.progress[1] for step in DOCUMENT_PIPELINE[:-1]]
    assert {step.stage: step.progress for step in DOCUMENT_PIPELINE} == {
        Stage.EXTRACT: (0, 40), Stage.EMBED: (40, 80), Stage.INDEX: (80, 100)}


def test_statuses_move_queued_then_stage_by_stage_then_final():
    assert set(STATUS_ORDER) == set(DocumentStatus) and len(STATUS_ORDER) == len(DocumentStatus)
    assert list(STATUS_ORDER) == list(DocumentStatus), "the enum lists the statuses in their order"
    assert STATUS_ORDER[0] is DocumentStatus.QUEUED
    assert set(STATUS_ORDER[-len(FINAL_STATUSES):]) == FINAL_STATUSES
    assert [step.status for step in DOCUMENT_PIPELINE] == [
        DocumentStatus.EXTRACTING, DocumentStatus.EMBEDDING, DocumentStatus.INDEXING]
    # The ranks the status store's scripts have always compared.
    assert STATUS_RANK == {"queued": 0, "extracting": 1, "embedding": 2, "indexing": 3,
                           "completed": 4, "failed": 5, "cancelled": 6}


def test_a_replayed_stage_resumes_from_its_own_stage_only():
    assert STAGE_OF_PIPELINE_TASK == {step.task.value: step.stage for step in DOCUMENT_PIPELINE}
    assert len(STAGE_OF_PIPELINE_TASK) == len(DOCUMENT_PIPELINE)


def test_the_key_prefix_is_spelled_once():
    # The settings default is the constant itself, not a second spelling of it.
    assert Settings.model_fields["redis_key_prefix"].default is KEY_PREFIX
