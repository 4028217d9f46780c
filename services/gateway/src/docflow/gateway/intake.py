"""Accepting an uploaded document: judge it, store it, record it, enqueue it.

Either all of that happens or, as far as the failure allows, none of it: a failed
step undoes the earlier ones, so a client that got a 503 can simply retry without
leaving a stored original or a forever-"queued" record behind.

Before that, the upload is compared with what the tenant already has: bytes it
already holds (by SHA-256, docflow.gateway.duplicates) are answered with the existing
document (`on_duplicate=skip`), a new version of it (`reprocess`), or a new document
all the same (`new`). And an idempotent retry that overtook a request whose gateway
died (docflow.gateway.idempotency) is answered with the document that request made.
"""

import uuid

import structlog
from fastapi import HTTPException, status

from docflow.gateway.dependencies import Services
from docflow.gateway.duplicates import OnDuplicate
from docflow.gateway.filenames import sanitize_filename
from docflow.gateway.idempotency import Claim
from docflow.gateway.metrics import DOCUMENTS_ACCEPTED, EMPTY_FILE_DETAIL, UPLOADED_BYTES
from docflow.gateway.pipeline import new_task_id
from docflow.gateway.schemas import DocumentAccepted
from docflow.gateway.uploads import Upload
from docflow.gateway.versions import start_first_version, start_new_version
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


def accept_upload(services: Services, tenant: str, upload: Upload, on_duplicate: OnDuplicate,
                  claim: Claim | None = None, bulk: bool = False) -> tuple[int, DocumentAccepted]:
    """(status code, answer): 202 for a new document or version, 200 for a skipped
    duplicate. `claim`: the request's idempotency key, held (None without a key).
    `bulk`: part of a big batch, so on the bulk lanes whatever the tenant's count
    (docflow.gateway.lanes)."""
    filename = sanitize_filename(upload.raw_filename)
    content_type = judge_content_type(upload, filename)
    if claim is not None and claim.overtaken_document_id:
        interrupted = services.status.get_for_tenant(claim.overtaken_document_id, tenant)
        if interrupted is not None:  # else it never got as far as its record: start afresh
            log.info("idempotent retry answered with the document an interrupted request created",
                     document_id=interrupted.document_id)
            return status.HTTP_202_ACCEPTED, _existing(interrupted, duplicate=False)
    if on_duplicate is not OnDuplicate.NEW:
        existing = _document_with(services, tenant, upload.sha256)
        if existing is not None:
            structlog.contextvars.bind_contextvars(document_id=existing.document_id)
            if on_duplicate is OnDuplicate.SKIP:
                log.info("duplicate upload skipped", filename=filename, status=existing.status.value)
                return status.HTTP_200_OK, _existing(existing, duplicate=True)
            started = start_new_version(services, existing, bulk=bulk)
            if started is not None:  # None: deleted just now, so not a duplicate any more
                log.info("duplicate upload reprocessing", version=started.version, task_id=started.task_id)
                return status.HTTP_202_ACCEPTED, DocumentAccepted(
                    document_id=existing.document_id, task_id=started.task_id, duplicate=True)
    return status.HTTP_202_ACCEPTED, accept_document(services, tenant, upload, filename, content_type, claim,
                                                     bulk)


def _document_with(services: Services, tenant: str, digest: str) -> DocumentRecord | None:
    """The tenant's document with these bytes, if it still exists."""
    document_id = services.digests.document_with(tenant, digest)
    return services.status.get_for_tenant(document_id, tenant) if document_id else None


def _existing(record: DocumentRecord, duplicate: bool) -> DocumentAccepted:
    return DocumentAccepted(document_id=record.document_id, task_id=record.task_id or "",
                            status=record.status, duplicate=duplicate)


def accept_document(services: Services, tenant: str, upload: Upload, filename: str, content_type: ContentType,
                    claim: Claim | None = None, bulk: bool = False) -> DocumentAccepted:
    """A new document from the upload: stored, recorded (with its digest) and enqueued."""
    document_id = uuid.uuid4().hex
    task_id = new_task_id()
    structlog.contextvars.bind_contextvars(document_id=document_id)
    if claim is not None:
        services.idempotency.attach(claim, document_id)
    prefix = artifact_prefix(tenant, document_id)
    original_key = prefix + "original"

    def remember_digest(writes) -> None:
        services.digests.remember(tenant, upload.sha256, document_id, writes)

    services.storage.put(original_key, upload.read_all())
    try:
        now = utcnow()
        record = DocumentRecord(
            document_id=document_id, tenant=tenant, filename=filename, content_type=content_type.value,
            size_bytes=upload.size, metadata=upload.metadata, task_id=task_id,
            original_key=original_key, created_at=now, updated_at=now,
        )
        # The record, the task's owner and the digest in one transaction, then the
        # message; a failed enqueue undoes the record (docflow.gateway.versions).
        start_first_version(services, record, also=remember_digest, bulk=bulk)
    except BaseException:
        _remove_original(services, tenant, document_id)
        raise
    DOCUMENTS_ACCEPTED.labels(content_type=content_type.value).inc()
    UPLOADED_BYTES.labels(content_type=content_type.value).inc(upload.size)
    log.info("document accepted", filename=filename, content_type=content_type.value,
             size_bytes=upload.size, task_id=task_id)
    return DocumentAccepted(document_id=document_id, task_id=task_id)


def _remove_original(services: Services, tenant: str, document_id: str) -> None:
    """Best effort: the failure that got us here may also stop this. (A digest left
    behind names a document that does not exist, which reads as no duplicate.)"""
    undos = (("stored original", lambda: services.storage.delete_prefix(artifact_prefix(tenant, document_id))),
             ("digest", lambda: services.digests.forget(tenant, document_id)))
    for what, undo in undos:
        try:
            undo()
        except Exception as exc:
            log.error("could not undo a rejected upload", left_behind=what, error=str(exc))
