"""/v1/batches: many documents in one request, and their progress as one
(docflow.gateway.batches). Another tenant's batch answers like a missing one (404)."""

from typing import Annotated, Any

import redis
import structlog
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from docflow.gateway.batches import (
    DELETED,
    ReceivedBatch,
    accept_batch,
    batch_fingerprint,
    batch_progress,
    receive_batch,
)
from docflow.gateway.dependencies import Services, ServicesDep, Tenant
from docflow.gateway.duplicates import OnDuplicate
from docflow.gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from docflow.gateway.idempotency import REPLAYED_HEADER, answer_once, fingerprint, parse_key
from docflow.gateway.metrics import counting_rejections
from docflow.gateway.rate_limit import RATE_LIMITED, Action, UploadRateLimited
from docflow.gateway.uploads import FILE_FIELD, METADATA_FIELD
from docflow.shared.status import DocumentStatus

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/batches", tags=["batches"])

_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": [FILE_FIELD],
            "properties": {
                FILE_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "The documents, one part each (up to DOCFLOW_BATCH_MAX_FILES)"},
                METADATA_FIELD: {"type": "string",
                                 "description": "Optional JSON object stored with every document of the batch"},
            },
        }}},
    }
}


class FileError(BaseModel):
    code: str = Field(description="empty_file, unsupported_type, too_large, or unavailable (send it again)")
    detail: str


class BatchEntry(BaseModel):
    filename: str
    document_id: str | None = Field(description="null when the file was refused (see `error`)")
    task_id: str | None = None
    status: DocumentStatus | None = Field(default=None, description="queued, or a duplicate's current status")
    duplicate: bool | None = Field(default=None, description="true: the tenant already had these bytes")
    error: FileError | None = None


class BatchAccepted(BaseModel):
    batch_id: str
    documents: list[BatchEntry] = Field(description="One entry per file, in the order sent")


class BatchDocument(BaseModel):
    filename: str
    document_id: str | None
    status: str | None = Field(default=None, description=f"The document's status now, or {DELETED}")
    progress: int | None = None
    duplicate: bool | None = None
    error: FileError | None = None


class BatchProgress(BaseModel):
    batch_id: str
    created_at: str
    files: int = Field(description="Files in the request")
    total: int = Field(description="Documents the batch made or found (two equal files are one)")
    rejected: int = Field(description="Files refused (their `error` says why)")
    counts: dict[str, int] = Field(description=f"Documents by status, and {DELETED}")
    progress: int = Field(ge=0, le=100, description="Mean of the documents' progress; final or deleted "
                                                    "ones count as 100")
    finished: bool = Field(description="Every document is completed, failed, cancelled or deleted")
    documents: list[BatchDocument]


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=BatchAccepted, openapi_extra=_BATCH_BODY,
    responses={400: {"description": f"Malformed multipart body or a malformed {IDEMPOTENCY_HEADER}"},
               409: {"description": f"A request with this {IDEMPOTENCY_HEADER} is still being processed"},
               413: {"description": "More files than DOCFLOW_BATCH_MAX_FILES, or a body over "
                                    "DOCFLOW_BATCH_MAX_BYTES (a single file over the upload limit is that "
                                    "file's error instead)"},
               415: {"description": "Not multipart/form-data"},
               422: {"description": "No file parts, metadata that is not a JSON object, an invalid "
                                    f"on_duplicate, or an {IDEMPOTENCY_HEADER} already used for another "
                                    "request"},
               **RATE_LIMITED,
               503: {"description": "Queue or storage unavailable before any file was accepted; retry"}},
    dependencies=[UploadRateLimited],
)
async def create_batch(
    request: Request, services: ServicesDep, tenant: Tenant,
    on_duplicate: Annotated[OnDuplicate, Query(
        description="For each file whose bytes the tenant already has: skip (its entry names the existing "
                    "document), new, reprocess")] = OnDuplicate.SKIP,
    idempotency_key: Annotated[str | None, Header(
        alias=IDEMPOTENCY_HEADER,
        description="Retry safely: a repeat of this batch with the same key gets the first answer")] = None,
) -> JSONResponse:
    """Accept many documents at once; each file is judged on its own (202)."""
    settings = services.settings
    with counting_rejections():
        key = parse_key(idempotency_key)
        batch = await receive_batch(request, settings.max_upload_bytes, settings.batch_max_files,
                                    settings.batch_max_bytes)
        try:
            response = await run_in_threadpool(_accept, services, tenant, batch, on_duplicate, key)
        finally:
            batch.close()
    if REPLAYED_HEADER not in response.headers and len(batch.files) > 1:
        try:  # the first file was paid for on the way in
            await services.rate_limiter.charge(tenant, Action.UPLOAD, len(batch.files) - 1)
        except redis.exceptions.RedisError as exc:  # the documents exist: answer them all the same
            log.warning("could not charge a batch's files to the tenant's upload limit", error=str(exc))
    return response


def _accept(services: Services, tenant: str, batch: ReceivedBatch, on_duplicate: OnDuplicate,
            key: str | None) -> JSONResponse:
    if key is None:
        status_code, body = accept_batch(services, tenant, batch, on_duplicate)
        return JSONResponse(body, status_code=status_code)
    asked = fingerprint(*batch_fingerprint(batch, on_duplicate))
    return answer_once(services.idempotency, tenant, key, asked,
                       lambda claim: accept_batch(services, tenant, batch, on_duplicate, claim))


@router.get("/{batch_id}", response_model=BatchProgress,
            responses={status.HTTP_404_NOT_FOUND: {"description": "No such batch for this tenant"}})
def get_batch(batch_id: str, services: ServicesDep, tenant: Tenant) -> dict[str, Any]:
    """The batch's documents by status, its overall progress and whether it is finished."""
    progress = batch_progress(services, tenant, batch_id)
    if progress is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"batch {batch_id} not found")
    return progress
