"""Accepting a document submitted as a URL: `POST /v1/documents` with a JSON body
`{"url": ..., "metadata": {...}}`.

The gateway never fetches (docflow.extractor.fetch does, on a worker, under the
address rules of docflow.shared.url_safety). Here the request is only judged and
recorded: the URL's form (http or https, at most 2048 characters, a host, no
credentials; an IP literal is checked against the address rules too, since that
needs no lookup), the metadata as for an upload. The record is created with the URL
as `source_url`, content type URL_PENDING (text/uri-list) and size 0 until the
fetch records what it found, and the chain is enqueued as for an upload.

Duplicate recognition by content does not apply: the bytes are not known until
fetched, and a page fetched again may have changed, so every URL request makes a new
document (`on_duplicate` is ignored). An `Idempotency-Key` does apply: the same key
with the same URL and metadata answers the first request's document.
"""

import uuid
from typing import Any

import structlog
from fastapi import HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from docflow.gateway.dependencies import Services
from docflow.gateway.idempotency import Claim
from docflow.gateway.metadata import MetadataError, validated_metadata
from docflow.gateway.metrics import DOCUMENTS_ACCEPTED
from docflow.gateway.pipeline import new_task_id
from docflow.gateway.schemas import DocumentAccepted
from docflow.gateway.versions import start_first_version
from docflow.shared.content_types import URL_PENDING
from docflow.shared.filenames import filename_from_url
from docflow.shared.messages import artifact_prefix
from docflow.shared.status import DocumentRecord, utcnow
from docflow.shared.url_safety import MAX_URL_CHARS, UrlRefused, check_literal_host, parse_url

log = structlog.get_logger(__name__)

JSON_MEDIA_TYPE = "application/json"


class UrlSubmission(BaseModel):
    """POST /v1/documents as JSON: a document to fetch from a URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description=f"http or https, at most {MAX_URL_CHARS} characters, no credentials; "
                                 "fetched by the extractor, which refuses private, loopback, link-local and "
                                 "cloud metadata addresses unless DOCFLOW_ALLOW_PRIVATE_URLS=true")
    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="Stored with the document, as an upload's metadata field")


def parse_submission(body: Any, allow_private: bool) -> UrlSubmission:
    """The request's submission, or 422 with the reason."""
    try:
        submission = UrlSubmission.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _reason(exc)) from None
    try:
        check_literal_host(parse_url(submission.url), allow_private)
    except UrlRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {exc}") from None
    try:
        validated_metadata(submission.metadata)
    except MetadataError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return submission


def _reason(exc: ValidationError) -> str:
    """Pydantic's errors as one sentence, without echoing the input back."""
    reasons = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "the body"
        if error["type"] == "extra_forbidden":
            reasons.append(f"unknown field {where!r} (a JSON body names a document by its url, with optional "
                           "metadata; a file is uploaded as multipart/form-data)")
        elif error["type"] == "missing":
            reasons.append(f"missing field {where!r}")
        elif error["type"] == "model_type":
            reasons.append('the body must be a JSON object: {"url": ..., "metadata": {...}}')
        else:
            reasons.append(f"{where}: {error['msg']}")
    return "; ".join(reasons)


def accept_url(services: Services, tenant: str, submission: UrlSubmission,
               claim: Claim | None = None) -> tuple[int, DocumentAccepted]:
    """(202, answer): the document recorded and its chain enqueued. `claim`: the
    request's idempotency key, held (None without a key)."""
    if claim is not None and claim.overtaken_document_id:
        interrupted = services.status.get_for_tenant(claim.overtaken_document_id, tenant)
        if interrupted is not None:  # else it never got as far as its record: start afresh
            log.info("idempotent retry answered with the document an interrupted request created",
                     document_id=interrupted.document_id)
            return status.HTTP_202_ACCEPTED, DocumentAccepted(
                document_id=interrupted.document_id, task_id=interrupted.task_id or "",
                status=interrupted.status)
    document_id = uuid.uuid4().hex
    task_id = new_task_id()
    structlog.contextvars.bind_contextvars(document_id=document_id)
    if claim is not None:
        services.idempotency.attach(claim, document_id)
    now = utcnow()
    record = DocumentRecord(
        document_id=document_id, tenant=tenant, filename=filename_from_url(submission.url),
        content_type=URL_PENDING, size_bytes=0, metadata=submission.metadata, task_id=task_id,
        original_key=artifact_prefix(tenant, document_id) + "original", source_url=submission.url,
        created_at=now, updated_at=now,
    )
    # Nothing is stored yet: the extractor stores the fetched bytes as the original. A
    # failed enqueue undoes the record (docflow.gateway.versions).
    start_first_version(services, record)
    DOCUMENTS_ACCEPTED.labels(content_type=URL_PENDING).inc()
    log.info("document accepted from a URL", filename=record.filename, task_id=task_id)
    return status.HTTP_202_ACCEPTED, DocumentAccepted(document_id=document_id, task_id=task_id)
