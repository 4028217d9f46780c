"""/v1/documents: upload, read, list, update metadata, delete, reprocess, cancel, and read a
document's pages and chunks — one tenant at a time.

Another tenant's document answers exactly like a missing one (404), so ids leak
nothing across tenants.
"""

import json
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from docflow.gateway.dependencies import Services, ServicesDep, Tenant
from docflow.gateway.duplicates import OnDuplicate
from docflow.gateway.filenames import sanitize_filename
from docflow.gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from docflow.gateway.idempotency import answer_once, fingerprint, parse_key
from docflow.gateway.intake import accept_upload
from docflow.gateway.json_bodies import StrictJsonError, StrictJsonRoute
from docflow.gateway.metrics import counting_rejections
from docflow.gateway.rate_limit import RATE_LIMITED, ReprocessRateLimited, UploadRateLimited
from docflow.gateway.metadata import MetadataError, validated_metadata
from docflow.gateway.schemas import (
    Document, DocumentAccepted, DocumentChunks, DocumentPage, DocumentPages, MetadataUpdate,
)
from docflow.gateway.uploads import FILE_FIELD, METADATA_FIELD, Upload, receive_upload
from docflow.gateway.url_intake import JSON_MEDIA_TYPE, UrlSubmission, accept_url, parse_submission
from docflow.gateway.versions import start_new_version
from docflow.shared import artifacts
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.messages import artifact_prefix, version_prefix
from docflow.shared.names import Task
from docflow.shared.status import FINAL_STATUSES, DocumentRecord, DocumentStatus

log = structlog.get_logger(__name__)
# PATCH bodies are read bounded and parsed strictly (duplicate keys and NaN refused).
router = APIRouter(prefix="/v1/documents", tags=["documents"], route_class=StrictJsonRoute)

DEFAULT_PAGE_SIZE = 20
ARTIFACT_PAGE_SIZE_MAX = 100
NOT_FOUND = {status.HTTP_404_NOT_FOUND: {"description": "No such document for this tenant"}}

# The body is parsed by `receive_upload` (streaming, with limits) or, as JSON, by
# `parse_submission`, so describe it to OpenAPI by hand.
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {
                    FILE_FIELD: {"type": "string", "format": "binary",
                                 "description": "PDF, DOCX, PNG, JPEG, TIFF, plain text or Markdown"},
                    METADATA_FIELD: {"type": "string",
                                     "description": "Optional JSON object stored with the document"},
                },
            }},
            JSON_MEDIA_TYPE: {"schema": UrlSubmission.model_json_schema()},
        },
    }
}


def _document_or_404(services: Services, tenant: str, document_id: str) -> DocumentRecord:
    record = services.status.get_for_tenant(document_id, tenant)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"document {document_id} not found")
    structlog.contextvars.bind_contextvars(document_id=document_id)
    return record


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=DocumentAccepted, openapi_extra=_UPLOAD_BODY,
    responses={200: {"model": DocumentAccepted,
                     "description": "on_duplicate=skip: the tenant already has these bytes; the existing "
                                    "document, its current status and `duplicate: true`"},
               400: {"description": f"Empty file, malformed form or a malformed {IDEMPOTENCY_HEADER}"},
               409: {"description": f"A request with this {IDEMPOTENCY_HEADER} is still being processed; "
                                    "retry after Retry-After seconds"},
               413: {"description": "File larger than the configured limit"},
               415: {"description": "Not a supported document type (judged by content), or a body that "
                                    "is neither multipart/form-data nor application/json"},
               422: {"description": "Missing file field, metadata that is not a JSON object, an invalid "
                                    f"on_duplicate, or an {IDEMPOTENCY_HEADER} already used for another "
                                    "request; as JSON: a URL that is not http(s), too long, without a host, "
                                    "with credentials or at a refused IP address, or an unknown field "
                                    "(the reason is in `detail`)"},
               **RATE_LIMITED,
               503: {"description": "Queue or storage unavailable; retry after Retry-After seconds"}},
    dependencies=[UploadRateLimited],
)
async def upload_document(
    request: Request, services: ServicesDep, tenant: Tenant,
    on_duplicate: Annotated[OnDuplicate, Query(
        description="If the tenant already has a document with these bytes: skip (answer 200 with it), "
                    "new (make another), reprocess (a new version of it, 202)")] = OnDuplicate.SKIP,
    idempotency_key: Annotated[str | None, Header(
        alias=IDEMPOTENCY_HEADER,
        description="Retry safely: a repeat of this request with the same key within "
                    "DOCFLOW_IDEMPOTENCY_TTL_SECONDS gets the first answer, and nothing is stored "
                    "again")] = None,
) -> JSONResponse:
    """Store the original and enqueue extract → embed → index; returns at once (202).

    Or, with a JSON body `{"url", "metadata"}`: record a document the extractor fetches
    from the URL (docflow.gateway.url_intake); 202 as for an upload. `on_duplicate`
    does not apply to it (the bytes are not known until fetched)."""
    with counting_rejections():
        key = parse_key(idempotency_key)  # a malformed key is refused before the body is read
        if _media_type(request) == JSON_MEDIA_TYPE:
            submission = parse_submission(await _json_body(request), services.settings.allow_private_urls)
            return await run_in_threadpool(_accept_url, services, tenant, submission, key)
        upload = await receive_upload(request, services.settings.max_upload_bytes)
        try:
            return await run_in_threadpool(_accept, services, tenant, upload, on_duplicate, key)
        finally:
            upload.close()


def _accept(services: Services, tenant: str, upload: Upload, on_duplicate: OnDuplicate,
            key: str | None) -> JSONResponse:
    if key is None:
        status_code, accepted = accept_upload(services, tenant, upload, on_duplicate)
        return JSONResponse(accepted.model_dump(mode="json"), status_code=status_code)
    # The request as the key promises it: the same bytes, name, metadata and choice.
    asked = fingerprint(upload.sha256, sanitize_filename(upload.raw_filename), upload.metadata,
                        on_duplicate.value)

    def handle(claim) -> tuple[int, dict[str, Any]]:
        status_code, accepted = accept_upload(services, tenant, upload, on_duplicate, claim)
        return status_code, accepted.model_dump(mode="json")

    return answer_once(services.idempotency, tenant, key, asked, handle)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json_body(request: Request) -> Any:
    """The body, read bounded and parsed strictly (StrictJsonRequest: 413, 422)."""
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, StrictJsonError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the body is not valid JSON: {exc}") from None


def _accept_url(services: Services, tenant: str, submission: UrlSubmission, key: str | None) -> JSONResponse:
    if key is None:
        status_code, accepted = accept_url(services, tenant, submission)
        return JSONResponse(accepted.model_dump(mode="json"), status_code=status_code)
    # "url" keeps these apart from an upload's fingerprints (which open with a digest).
    asked = fingerprint("url", submission.url, submission.metadata)

    def handle(claim) -> tuple[int, dict[str, Any]]:
        status_code, accepted = accept_url(services, tenant, submission, claim)
        return status_code, accepted.model_dump(mode="json")

    return answer_once(services.idempotency, tenant, key, asked, handle)


@router.get("", response_model=DocumentPage)
def list_documents(
    services: ServicesDep,
    tenant: Tenant,
    status_filter: Annotated[DocumentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int | None, Query(ge=1, description="Page size (default 20)")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DocumentPage:
    """The tenant's documents, newest first."""
    page_size_max = services.settings.list_page_size_max
    if limit is None:
        limit = min(DEFAULT_PAGE_SIZE, page_size_max)
    if limit > page_size_max:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"limit must be between 1 and {page_size_max}")
    records, total = services.status.list(tenant, status_filter, limit, offset)
    return DocumentPage(documents=[Document.from_record(r) for r in records], total=total,
                        limit=limit, offset=offset)


@router.get("/{document_id}", response_model=Document, responses=NOT_FOUND)
def get_document(document_id: str, services: ServicesDep, tenant: Tenant) -> Document:
    return Document.from_record(_document_or_404(services, tenant, document_id))


@router.patch("/{document_id}", response_model=Document,
              responses={**NOT_FOUND, 413: {"description": "Request body over 1 MiB"},
                         422: {"description": "Not a valid metadata object, a key given twice, NaN (the reason "
                                              "is in `detail`)"},
                         503: {"description": "Saved, but the index could not be told yet: repeat the request"}})
def update_document_metadata(document_id: str, update: MetadataUpdate, services: ServicesDep,
                             tenant: Tenant) -> Document:
    """Replace the document's metadata without re-extracting or re-embedding it: the record
    changes now, and the indexer rewrites it on the document's chunks, so filters see it
    within moments (a run still indexing the document picks it up as it finishes)."""
    try:
        metadata = validated_metadata(update.metadata)
    except MetadataError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    record = services.status.set_metadata(document_id, tenant, metadata)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"document {document_id} not found")
    structlog.contextvars.bind_contextvars(document_id=document_id)
    try:
        # The task reads the record when it runs: a late or repeated run writes the newest metadata.
        services.pipeline.send(Task.UPDATE_METADATA.value, [tenant, document_id])
    except Exception as exc:
        log.warning("metadata saved but its index update was not enqueued", error=str(exc))
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "metadata saved, but the index update could not be queued; repeat the request",
                            headers={"Retry-After": "5"}) from None
    log.info("document metadata updated", keys=len(metadata))
    return Document.from_record(record)


@router.delete("/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_document(document_id: str, services: ServicesDep, tenant: Tenant) -> Response:
    """Delete the record, every stored artifact and (on the indexer) the vectors."""
    _document_or_404(services, tenant, document_id)
    # The record goes first: in-flight stages check it before each run and stop.
    services.status.delete(document_id, tenant)
    services.digests.forget(tenant, document_id)  # its bytes are new again to this tenant
    deleted_objects = services.storage.delete_prefix(artifact_prefix(tenant, document_id))
    services.pipeline.enqueue_delete_document(tenant, document_id)
    log.info("document deleted", deleted_objects=deleted_objects)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{document_id}/reprocess", status_code=status.HTTP_202_ACCEPTED,
             response_model=DocumentAccepted,
             responses={**NOT_FOUND, **RATE_LIMITED,
                        503: {"description": "Queue unavailable; nothing changed, retry after Retry-After"}},
             dependencies=[ReprocessRateLimited])
def reprocess_document(document_id: str, services: ServicesDep, tenant: Tenant) -> DocumentAccepted:
    """Run the pipeline again as a new version; runs of older versions stop themselves.
    If it cannot be enqueued the document stays exactly as it was (503)."""
    record = _document_or_404(services, tenant, document_id)
    started = start_new_version(services, record)
    if started is None:  # deleted between the read above and the restart
        _document_or_404(services, tenant, document_id)
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"document {document_id} not found")
    log.info("document reprocessing", version=started.version, task_id=started.task_id)
    return DocumentAccepted(document_id=document_id, task_id=started.task_id)


@router.post("/{document_id}/cancel", response_model=Document,
             responses={**NOT_FOUND, 409: {"description": "The document is already final"}})
def cancel_document(document_id: str, services: ServicesDep, tenant: Tenant) -> Document:
    """Stop processing: stages that have not started yet will skip this document."""
    record = _document_or_404(services, tenant, document_id)
    if record.status in FINAL_STATUSES or not services.status.cancel(document_id):
        current = services.status.get(document_id)
        final_status = current.status.value if current else record.status.value
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"document {document_id} is already {final_status}; nothing to cancel")
    log.info("document cancelled")
    return Document.from_record(_document_or_404(services, tenant, document_id))


# --- a document's pages and chunks ---------------------------------------------------------
# Read from the extractor's artifacts of the current version (docflow.shared.artifacts,
# the one module that knows their names and format): the gateway reads storage, never
# the extractor's code. See docs/architecture.md, "Reading a document's pages and chunks".

ARTIFACT_NOT_READY = {status.HTTP_409_CONFLICT: {
    "description": "The current version has not been extracted (yet): queued, extracting, or failed or "
                   "cancelled before its text was stored (the reason is in `detail`)"}}
ArtifactOffset = Annotated[int, Query(ge=0, description="Entries to skip")]
ArtifactLimit = Annotated[int, Query(ge=1, le=ARTIFACT_PAGE_SIZE_MAX,
                                     description=f"Entries to return, 1 to {ARTIFACT_PAGE_SIZE_MAX}")]


def _stored_artifact(services: Services, tenant: str, document_id: str,
                     name: str) -> tuple[DocumentRecord, bytes]:
    """The document's record and the bytes of its current version's artifact `name`:
    404 for no such document of this tenant, 409 (saying why) while there is none."""
    record = _document_or_404(services, tenant, document_id)
    try:
        return record, services.storage.get(version_prefix(tenant, document_id, record.version) + name)
    except PermanentError as exc:
        if exc.code is not ErrorCode.ARTIFACT_MISSING:
            raise
    # Read again so that a document deleted meanwhile is a 404 and the reason names its state now.
    current = _document_or_404(services, tenant, document_id)
    raise HTTPException(status.HTTP_409_CONFLICT, _not_extracted_reason(current, name))


def _not_extracted_reason(record: DocumentRecord, name: str) -> str:
    what = name.removesuffix(".json")
    if record.status not in FINAL_STATUSES:
        return (f"document {record.document_id} has no {what} yet: version {record.version} is "
                f"{record.status.value}; its {what} are readable once it has been extracted")
    reason = f"document {record.document_id} has no {what}: version {record.version} is {record.status.value}"
    if record.error is not None:
        stage = record.error.stage or "an unknown stage"
        reason += f" ({record.error.code} at {stage}: {record.error.message})"
    return reason + f" and its {what} were never stored"


@router.get("/{document_id}/pages", response_model=DocumentPages,
            responses={**NOT_FOUND, **ARTIFACT_NOT_READY})
def list_document_pages(document_id: str, services: ServicesDep, tenant: Tenant, offset: ArtifactOffset = 0,
                        limit: ArtifactLimit = DEFAULT_PAGE_SIZE) -> DocumentPages:
    """The text of the current version's pages, in order (blank ones included), a slice at a time."""
    record, data = _stored_artifact(services, tenant, document_id, artifacts.PAGES)
    pages = artifacts.load_pages(data)
    return DocumentPages(document_id=document_id, version=record.version, total=len(pages), offset=offset,
                         limit=limit, pages=pages[offset:offset + limit])


@router.get("/{document_id}/chunks", response_model=DocumentChunks,
            responses={**NOT_FOUND, **ARTIFACT_NOT_READY})
def list_document_chunks(document_id: str, services: ServicesDep, tenant: Tenant, offset: ArtifactOffset = 0,
                         limit: ArtifactLimit = DEFAULT_PAGE_SIZE) -> DocumentChunks:
    """The current version's chunks (what is embedded and found), in order, a slice at a time;
    a search hit's `chunk_index` is the offset of its chunk here."""
    record, data = _stored_artifact(services, tenant, document_id, artifacts.CHUNKS)
    chunks = artifacts.load_chunks(data)
    return DocumentChunks(document_id=document_id, version=record.version, total=len(chunks), offset=offset,
                          limit=limit, chunks=chunks[offset:offset + limit])
