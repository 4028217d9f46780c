"""/v1/tasks/{task_id}: where a document's pipeline run is, stage by stage.

Each stage's state is Celery's, settled by the document's record where Celery cannot
know better:
- a run replaced by a newer version (a reprocess, or a recovery) is `SUPERSEDED` in
  every stage that had not finished: its tasks stop themselves (Celery would show the
  one that was running as STARTED forever);
- a cancelled run is `CANCELLED` in every stage that had not finished;
- a stage whose result is gone (results expire after DOCFLOW_RESULT_EXPIRES_SECONDS,
  and a completed version's are forgotten) reads PENDING in Celery: the record says it
  succeeded if the document went past it, or failed if it failed there.
"""

from celery import states
from fastapi import APIRouter, HTTPException, status

from docflow.gateway.dependencies import ServicesDep, Tenant
from docflow.gateway.pipeline import DOCUMENT_STAGES, overall_state
from docflow.gateway.schemas import StageState, TaskStatus
from docflow.shared.status import DocumentRecord, DocumentStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

SUPERSEDED = "SUPERSEDED"
CANCELLED = "CANCELLED"
_ENDED = frozenset({states.SUCCESS, states.FAILURE})
_STAGE_ORDER = [stage.value for stage, _ in DOCUMENT_STAGES]


def settled(stages: list[StageState], record: DocumentRecord | None, task_id: str) -> list[StageState]:
    if record is None:  # deleted meanwhile: nothing to settle against
        return stages
    if record.task_id != task_id:
        return [_unless_ended(stage, SUPERSEDED) for stage in stages]
    if record.status == DocumentStatus.CANCELLED:
        return [_unless_ended(stage, CANCELLED) for stage in stages]
    if record.status == DocumentStatus.COMPLETED:
        return [_if_pending(stage, states.SUCCESS) for stage in stages]
    reached = _STAGE_ORDER.index(record.stage) if record.stage in _STAGE_ORDER else -1
    failed_here = record.status == DocumentStatus.FAILED
    settled_stages = []
    for position, stage in enumerate(stages):
        if position < reached:
            stage = _if_pending(stage, states.SUCCESS)
        elif position == reached and failed_here:
            stage = _if_pending(stage, states.FAILURE)
        settled_stages.append(stage)
    return settled_stages


def _unless_ended(stage: StageState, state: str) -> StageState:
    return stage if stage.state in _ENDED else stage.model_copy(update={"state": state})


def _if_pending(stage: StageState, state: str) -> StageState:
    return stage.model_copy(update={"state": state}) if stage.state == states.PENDING else stage


@router.get("/{task_id}", response_model=TaskStatus,
            responses={404: {"description": "No such task for this tenant"}})
def get_task(task_id: str, services: ServicesDep, tenant: Tenant) -> TaskStatus:
    owner = services.tasks.owner(task_id)
    if owner is None or owner.tenant != tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    stages = settled(services.pipeline.stage_states(task_id),
                     services.status.get_for_tenant(owner.document_id, tenant), task_id)
    return TaskStatus(task_id=task_id, document_id=owner.document_id,
                      state=overall_state([stage.state for stage in stages]), stages=stages)
