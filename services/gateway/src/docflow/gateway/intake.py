"""Accepting an uploaded document: judge it, store it, record it, enqueue it.

Either all of that happens or, as far as the failure allows, none of it: a failed
step undoes the earlier ones, so a client that got a 503 can simply retry without
leaving a stored original or a forever-"queued" record behind.
"""

import uuid

import structlog
from fastapi import HTTPException, status

from docflow.gateway.dependencies import Services
from docflow.gateway.filenames import sanitize_filename
from docflow.gateway.metrics import DOCUMENTS_ACCEPTED, EMPTY_FILE_DETAIL, UPLOADED_BYTES
from docflow.gateway.pipeline import new_task_id
from docflow.gateway.schemas import DocumentAccepted
from docflow.gateway.uploads import Upload
from docflow.gateway.versions import start_first_version
from docflow.shared.content_types import SNIFF_BYTES, ContentType, sniff
from docflow.shared.messages import artifact_prefix
from docflow.shared.status import DocumentRecord, utcnow

log = structlog.get_logger(__name__)

SUPPORTED_TYPES = ", ".join(content_type.value for content_type in ContentType)


def judge_content_type(upload: Upload, filename: str) -> ContentType:
    if upload.size == 0:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, EMPTY_FILE_DETAIL)
    content_type = sniff(upload.head(SNIFF_BYTES), filename)
    if content_type is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"unsupported document type (judged by content, not by name); supported: {SUPPORTED_TYPES}",
        )
    return content_type


def accept_document(services: Services, tenant: str, upload: Upload) -> DocumentAccepted:
    filename = sanitize_filename(upload.raw_filename)
    content_type = judge_content_type(upload, filename)
    document_id = uuid.uuid4().hex
    task_id = new_task_id()
    structlog.contextvars.bind_contextvars(document_id=document_id)
    prefix = artifact_prefix(tenant, document_id)
    original_key = prefix + "original"

    services.storage.put(original_key, upload.read_all())
    try:
        now = utcnow()
        record = DocumentRecord(
            document_id=document_id, tenant=tenant, filename=filename, content_type=content_type.value,
            size_bytes=upload.size, metadata=upload.metadata, task_id=task_id,
            original_key=original_key, created_at=now, updated_at=now,
        )
        # The record and the task's owner in one transaction, then the message; a failed
        # enqueue undoes the record (docflow.gateway.versions).
        start_first_version(services, record)
    except BaseException:
        _remove_original(services, tenant, document_id)
        raise
    DOCUMENTS_ACCEPTED.labels(content_type=content_type.value).inc()
    UPLOADED_BYTES.labels(content_type=content_type.value).inc(upload.size)
    log.info("document accepted", filename=filename, content_type=content_type.value,
             size_bytes=upload.size, task_id=task_id)
    return DocumentAccepted(document_id=document_id, task_id=task_id)


def _remove_original(services: Services, tenant: str, document_id: str) -> None:
    """Best effort: the failure that got us here may also stop this."""
    try:
        services.storage.delete_prefix(artifact_prefix(tenant, document_id))
    except Exception as exc:
        log.error("could not undo a rejected upload", left_behind="stored original", error=str(exc))
