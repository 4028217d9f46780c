"""/v1/tasks/{task_id}: where a document's pipeline run is, stage by stage."""

from fastapi import APIRouter, HTTPException, status

from docflow.gateway.dependencies import ServicesDep, Tenant
from docflow.gateway.pipeline import overall_state
from docflow.gateway.schemas import TaskStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.get("/{task_id}", response_model=TaskStatus,
            responses={404: {"description": "No such task for this tenant"}})
def get_task(task_id: str, services: ServicesDep, tenant: Tenant) -> TaskStatus:
    owner = services.tasks.owner(task_id)
    if owner is None or owner.tenant != tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    stages = services.pipeline.stage_states(task_id)
    return TaskStatus(task_id=task_id, document_id=owner.document_id,
                      state=overall_state([stage.state for stage in stages]), stages=stages)
