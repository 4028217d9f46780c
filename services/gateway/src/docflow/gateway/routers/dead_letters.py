"""/v1/admin/dead-letters: what the pipeline gave up on, and replaying it. Admin keys only.

A dead letter is a task whose retries ran out, a task redelivered more than
DOCFLOW_MAX_DELIVERIES times (a poison message), or a message no worker could decode
(kept for inspection, not replayable). Replaying a pipeline stage puts its failed
document back in flight (same version, error cleared, attempts restarted) and
enqueues the chain from that stage on, with the message it failed with -- so work
the earlier stages stored is not redone. Replaying any other task re-sends it as it
was. A replayed letter leaves the list; if the replay fails again, a new one comes.
"""

from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, Field, ValidationError

from docflow.gateway.auth import AdminKey
from docflow.gateway.dependencies import Services, ServicesDep
from docflow.gateway.pipeline import new_task_id
from docflow.shared.deadletters import DeadLetter
from docflow.shared.errors import ErrorCode
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import is_bulk_queue
from docflow.shared.pipeline_shape import STAGE_OF_PIPELINE_TASK
from docflow.shared.status import DocumentError, DocumentStatus

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/admin/dead-letters", tags=["admin"], dependencies=[AdminKey])

NOT_FOUND = {status.HTTP_404_NOT_FOUND: {"description": "No such dead letter (or already replayed)"}}


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetter] = Field(description="Newest first")
    total: int
    limit: int
    offset: int


class Replayed(BaseModel):
    dead_letter_id: str
    task_name: str
    task_id: str = Field(
        description="The pipeline task id (GET /v1/tasks/{task_id}) or the re-sent task's id")
    document_id: str | None
    status: Literal["replayed"] = "replayed"


def _letter_or_404(services: Services, letter_id: str) -> DeadLetter:
    letter = services.dead_letters.get(letter_id)
    if letter is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dead letter {letter_id} not found")
    return letter


@router.get("", response_model=DeadLetterPage)
def list_dead_letters(
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    # Redis list offsets are 64-bit; the schemathesis fuzz test sent 3.2e22 (a 500 then).
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DeadLetterPage:
    return DeadLetterPage(dead_letters=services.dead_letters.list(limit, offset),
                          total=services.dead_letters.count(), limit=limit, offset=offset)


@router.get("/{letter_id}", response_model=DeadLetter, responses=NOT_FOUND)
def get_dead_letter(letter_id: str, services: ServicesDep) -> DeadLetter:
    return _letter_or_404(services, letter_id)


@router.delete("/{letter_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def discard_dead_letter(letter_id: str, services: ServicesDep) -> Response:
    """Forget a dead letter without replaying it (its document stays as it is)."""
    if not services.dead_letters.remove(letter_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dead letter {letter_id} not found")
    log.info("dead letter discarded", dead_letter_id=letter_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{letter_id}/replay", status_code=status.HTTP_202_ACCEPTED, response_model=Replayed,
             responses={**NOT_FOUND, 409: {"description": "Not replayable: undecodable, or its document "
                                                          "was deleted, reprocessed or is not failed"}})
def replay_dead_letter(letter_id: str, services: ServicesDep) -> Replayed:
    letter = _letter_or_404(services, letter_id)
    if not letter.replayable:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"dead letter {letter_id} is a message that could not be decoded; "
                            "there is nothing to replay (discard it once inspected)")
    # Taking the letter off the list first makes concurrent replays of it run once.
    if not services.dead_letters.remove(letter_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dead letter {letter_id} was replayed meanwhile")
    try:
        replayed = _replay(services, letter)
    except BaseException:
        services.dead_letters.put_back(letter)
        raise
    log.info("dead letter replayed", dead_letter_id=letter_id, task_name=letter.task_name,
             task_id=replayed.task_id, document_id=letter.document_id)
    return replayed


def _replay(services: Services, letter: DeadLetter) -> Replayed:
    stage = STAGE_OF_PIPELINE_TASK.get(letter.task_name)
    if stage is None:
        task_id = services.pipeline.send(letter.task_name, letter.args)
        return Replayed(dead_letter_id=letter.id, task_name=letter.task_name, task_id=task_id,
                        document_id=letter.document_id)
    try:
        msg = PipelineMessage.model_validate(letter.args[0])
    except (IndexError, ValidationError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"the dead letter's message is malformed: {exc}") from None
    record = services.status.get(msg.document_id)
    if record is None or record.tenant != msg.tenant or record.version != msg.version:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"document {msg.document_id} was deleted or reprocessed since; nothing to replay")
    if record.status != DocumentStatus.FAILED or not services.status.reopen(msg.document_id, msg.version):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"document {msg.document_id} is {record.status.value}, not failed")
    task_id = record.task_id or new_task_id()
    try:
        # On the lane it failed in: a bulk import's document stays behind others' uploads.
        services.pipeline.resume_document(msg, task_id, stage, bulk=is_bulk_queue(letter.queue))
    except BaseException:
        # Never leave a reopened document queued with nothing enqueued for it.
        services.status.fail(msg.document_id, msg.version, record.error or DocumentError(
            code=ErrorCode.INTERNAL_ERROR, message="the replay could not be enqueued", stage=stage.value))
        raise
    return Replayed(dead_letter_id=letter.id, task_name=letter.task_name, task_id=task_id,
                    document_id=msg.document_id)
