"""Batches: many documents in one request (POST /v1/batches), and their progress as one.

**Receiving.** The multipart body is read as it arrives, like a single upload
(docflow.gateway.uploads), with the same per-part header bound and the same metadata
rules. Every `file` part is appended to one spool for the whole request (memory up
to SPOOL_IN_MEMORY_BYTES, then a temporary file), each file a slice of it with its
own size and SHA-256: a batch of 1,000 files holds one file descriptor and at most
1 MiB of memory, never the files themselves. A file over DOCFLOW_MAX_UPLOAD_BYTES is
cut back out of the spool as soon as it crosses the limit and the rest of its bytes
are read past: it becomes that file's error, not the request's. What makes the
*request* bad is refused as a whole: not multipart (415), malformed multipart (400),
no `file` part (422), more than DOCFLOW_BATCH_MAX_FILES files or a body over
DOCFLOW_BATCH_MAX_BYTES (413, as soon as it is known), metadata that is not a JSON
object (422).

**Accepting.** Each file goes through the upload's own path (docflow.gateway.intake:
judged by content, stored, recorded with its digest, enqueued), one after another,
with the batch's `metadata` and `on_duplicate`. A file that is empty, of an
unsupported type or too large gets `{"code", "detail"}` (the codes are the upload
rejection reasons of docflow.gateway.metrics) and the others go on. A duplicate gets
the existing document and `"duplicate": true`; two equal files in one batch are one
document (with `skip`). A transient failure (Redis or storage unreachable) before any
file was accepted is the request's 503; after some were, it is that file's error
(`unavailable`) and the answer still names the accepted ones.

**The record.** One Redis hash per batch under its tenant's keys
(`<prefix>tenant:<t>:batch:<id>`): `created_at`, `files`, and one field per file
(`entry:<n>`, the answer's entry as JSON), written as each file is decided, kept
DOCFLOW_RESULT_EXPIRES_SECONDS. Another tenant's batch is simply not under its keys
(404). `GET /v1/batches/{id}` reads the entries and each document's status and
progress in one round trip.

**Idempotency-Key.** The same module as uploads: the fingerprint covers every file
(digest and name, in order), the metadata and `on_duplicate`. The request's key is
renewed while it works through its files (a batch may outlast one lease) and names
its batch id: a retry that overtakes a dead gateway's request continues *that* batch,
reusing the entries already written, so no file becomes two documents.

**Rate limit.** A batch is let in like an upload (one token of the tenant's upload
bucket, before the body is read) and then charged its other files, into debt if need
be: N files cost N uploads, and a tenant's next uploads wait until the bucket has
refilled. A replayed answer costs its one token, as a replayed upload does.
"""

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Any

import redis
import structlog
from fastapi import HTTPException, Request, status
from kombu.exceptions import OperationalError
from python_multipart.multipart import parse_options_header

from docflow.gateway.dependencies import Services
from docflow.gateway.duplicates import OnDuplicate
from docflow.gateway.filenames import sanitize_filename
from docflow.gateway.idempotency import Claim
from docflow.gateway.intake import accept_upload
from docflow.gateway.lanes import is_bulk_batch
from docflow.gateway.metrics import DOCUMENTS_REJECTED, rejection_reason
from docflow.gateway.uploads import (
    FILE_FIELD,
    METADATA_FIELD,
    SPOOL_IN_MEMORY_BYTES,
    Upload,
    _boundary,
    _FormCollector,
    feed_multipart,
    parse_metadata,
)
from docflow.shared.errors import TransientError
from docflow.shared.pipeline_shape import FINAL_STATUSES, DocumentStatus
from docflow.shared.status import utcnow
from docflow.shared.webhooks import announce_batch, batch_key, batch_of_key

log = structlog.get_logger(__name__)

DELETED = "deleted"  # a batch's document that no longer exists
# The errors a file can have that are nobody's fault but a dependency's.
_TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError, TransientError)


# --- receiving ------------------------------------------------------------------------
@dataclass
class BatchFile(Upload):
    """One file of a batch: a slice of the request's spool (shared, so `close` leaves it
    open: the batch closes it). `too_large`: cut off at the per-file limit."""

    offset: int = 0
    too_large: bool = False

    def head(self, size: int) -> bytes:
        self.file.seek(self.offset)
        return self.file.read(min(size, self.size))

    def read_all(self) -> bytes:
        self.file.seek(self.offset)
        return self.file.read(self.size)

    def close(self) -> None:
        pass


@dataclass
class ReceivedBatch:
    spool: SpooledTemporaryFile
    files: list[BatchFile] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.spool.close()


def _too_many_files(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"too many files: a batch holds at most {limit} (DOCFLOW_BATCH_MAX_FILES)")


def _batch_too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"batch too large: the request body may be at most {limit} bytes "
                         "(DOCFLOW_BATCH_MAX_BYTES); send the files in smaller batches")


class _BatchCollector(_FormCollector):
    """The upload's header handling; every `file` part becomes a slice of one spool."""

    def __init__(self, max_file_bytes: int, max_files: int) -> None:
        super().__init__(max_file_bytes)
        self.max_files = max_files
        self.spool = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 (closed by the batch)
        self.files: list[BatchFile] = []
        self._current: BatchFile | None = None

    def callbacks(self) -> dict:
        return {**super().callbacks(), "on_part_end": self.on_part_end}

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._target = name
        if name == FILE_FIELD:
            if b"filename" not in options:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    f"form field '{FILE_FIELD}' must be a file upload, not a text field")
            if len(self.files) >= self.max_files:
                raise _too_many_files(self.max_files)
            self.digest = hashlib.sha256()
            self._current = BatchFile(raw_filename=options[b"filename"].decode("utf-8", "replace"),
                                      file=self.spool, size=0, offset=self.spool.tell())
            self.files.append(self._current)
        elif name == METADATA_FIELD:
            if self.metadata_bytes is not None:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    f"send at most one '{METADATA_FIELD}' field (it applies to every file)")
            self.metadata_bytes = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        current = self._current
        if self._target != FILE_FIELD or current is None:
            super().on_part_data(data, start, end)  # metadata (bounded) or ignored
            return
        if current.too_large:
            return  # read past
        current.size += end - start
        if current.size > self.max_file_bytes:
            current.too_large = True
            self.spool.seek(current.offset)  # give its bytes back
            self.spool.truncate()
            return
        self.spool.write(data[start:end])
        self.digest.update(data[start:end])

    def on_part_end(self) -> None:
        if self._target == FILE_FIELD and self._current is not None:
            self._current.sha256 = "" if self._current.too_large else self.digest.hexdigest()
            self._current = None
        self._target = None

    def close(self) -> None:
        self.spool.close()


async def receive_batch(request: Request, max_file_bytes: int, max_files: int, max_body_bytes: int) -> ReceivedBatch:
    """The batch's files and metadata, or an HTTPException as soon as the request as a
    whole is known to be bad."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise _batch_too_large(max_body_bytes)
    collector = _BatchCollector(max_file_bytes, max_files)
    await feed_multipart(request, boundary, collector, max_body_bytes, lambda: _batch_too_large(max_body_bytes))
    try:
        if not collector.files:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"no '{FILE_FIELD}' parts: send each document as a '{FILE_FIELD}' field")
        raw_metadata = None if collector.metadata_bytes is None else bytes(collector.metadata_bytes)
        metadata = parse_metadata(raw_metadata)
    except BaseException:
        collector.close()
        raise
    for file in collector.files:
        file.metadata = metadata
    return ReceivedBatch(spool=collector.spool, files=collector.files, metadata=metadata)


def batch_fingerprint(batch: ReceivedBatch, on_duplicate: OnDuplicate) -> list[Any]:
    """What the batch asks for, as the idempotency fingerprint's parts: every file (its
    bytes' digest, or that it was too large, and its name) in order, the metadata and
    the choice. (Tagged, so an upload's key can never match a batch.)"""
    files = [["too_large" if f.too_large else f.sha256, sanitize_filename(f.raw_filename)] for f in batch.files]
    return ["batch", files, batch.metadata, on_duplicate.value]


# --- the record -----------------------------------------------------------------------
class BatchStore:
    """Batches in Redis, per tenant: a hash of the batch's entries (see the module)."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def key(self, tenant: str, batch_id: str) -> str:
        return batch_key(self.prefix, tenant, batch_id)

    def begin(self, tenant: str, batch_id: str, files: int) -> None:
        """Create the record (or keep the one a resumed request finds)."""
        key = self.key(tenant, batch_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(key, "created_at", utcnow().isoformat())
        pipe.hset(key, "files", files)
        pipe.expire(key, self.ttl_seconds)
        pipe.execute()

    def add_entry(self, tenant: str, batch_id: str, index: int, entry: dict[str, Any]) -> None:
        """Record a file's entry; a document's also maps it to its batch, for the webhook
        dispatcher's `batch.completed` (docflow.shared.webhooks), for as long as the batch."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key(tenant, batch_id), f"entry:{index}", json.dumps(entry))
        if entry.get("document_id"):
            pipe.set(batch_of_key(self.prefix, tenant, entry["document_id"]), batch_id, ex=self.ttl_seconds)
        pipe.execute()

    def read(self, tenant: str, batch_id: str) -> tuple[str, list[dict[str, Any]]] | None:
        """(created_at, the entries in file order), or None: no such batch for this tenant."""
        raw = self.redis.hgetall(self.key(tenant, batch_id))
        if not raw or "created_at" not in raw:
            return None
        entries = sorted((int(name.split(":", 1)[1]), json.loads(value))
                         for name, value in raw.items() if name.startswith("entry:"))
        return raw["created_at"], [entry for _, entry in entries]

    def entries_by_index(self, tenant: str, batch_id: str) -> dict[int, dict[str, Any]]:
        raw = self.redis.hgetall(self.key(tenant, batch_id))
        return {int(name.split(":", 1)[1]): json.loads(value)
                for name, value in raw.items() if name.startswith("entry:")}


def batch_store(services: Services) -> BatchStore:
    return BatchStore(services.redis, services.settings.redis_key_prefix, services.settings.result_expires_seconds)


# --- accepting ------------------------------------------------------------------------
def _error_entry(filename: str, exc: Exception) -> dict[str, Any]:
    code = rejection_reason(exc)
    DOCUMENTS_REJECTED.labels(code).inc()
    detail = exc.detail if isinstance(exc, HTTPException) else "a backing service is unavailable; send this file again"
    return {"filename": filename, "document_id": None, "error": {"code": code, "detail": detail}}


def _judge(services: Services, tenant: str, file: BatchFile, on_duplicate: OnDuplicate,
           max_file_bytes: int, bulk: bool) -> dict[str, Any]:
    filename = sanitize_filename(file.raw_filename)
    if file.too_large:
        return _error_entry(filename, HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                                    f"file too large: the limit is {max_file_bytes} bytes"))
    try:
        _, accepted = accept_upload(services, tenant, file, on_duplicate, bulk=bulk)
    except HTTPException as exc:  # empty, unsupported type: this file's fault
        return _error_entry(filename, exc)
    finally:
        structlog.contextvars.unbind_contextvars("document_id")
    return {"filename": filename, "document_id": accepted.document_id, "task_id": accepted.task_id,
            "status": accepted.status.value, "duplicate": accepted.duplicate}


def accept_batch(services: Services, tenant: str, batch: ReceivedBatch, on_duplicate: OnDuplicate,
                 claim: Claim | None = None) -> tuple[int, dict[str, Any]]:
    """(202, the answer): every file decided and its entry recorded, in order."""
    store = batch_store(services)
    batch_id = uuid.uuid4().hex
    done: dict[int, dict[str, Any]] = {}
    if claim is not None and claim.overtaken_document_id:
        # The request this one retries died mid-batch: carry on with its batch.
        batch_id = claim.overtaken_document_id
        done = store.entries_by_index(tenant, batch_id)
        log.info("idempotent retry continues an interrupted batch", batch_id=batch_id, files_done=len(done))
    structlog.contextvars.bind_contextvars(batch_id=batch_id)
    store.begin(tenant, batch_id, len(batch.files))
    if claim is not None:
        services.idempotency.attach(claim, batch_id)
    renewed = time.monotonic()
    bulk = is_bulk_batch(len(batch.files), services.settings.fair_share_interactive_limit)
    entries: list[dict[str, Any]] = []
    for index, file in enumerate(batch.files):
        if index in done:
            entries.append(done[index])
            continue
        try:
            entry = _judge(services, tenant, file, on_duplicate, services.settings.max_upload_bytes, bulk)
        except _TRANSIENT as exc:
            if not any(e.get("document_id") for e in entries):
                raise  # nothing accepted yet: the whole request is a 503, and may be retried
            log.warning("a batch's file could not be accepted", index=index, error=str(exc))
            entry = _error_entry(sanitize_filename(file.raw_filename), exc)
        store.add_entry(tenant, batch_id, index, entry)
        entries.append(entry)
        if claim is not None and time.monotonic() - renewed > services.idempotency.lease_seconds / 3:
            if not services.idempotency.renew(claim):
                raise HTTPException(status.HTTP_409_CONFLICT, "this batch was taken over by a retry "
                                    "with the same Idempotency-Key; its answer is the retry's")
            renewed = time.monotonic()
    accepted = sum(1 for e in entries if e.get("document_id"))
    log.info("batch accepted", files=len(entries), accepted=accepted, rejected=len(entries) - accepted)
    try:  # its documents may all be final already: let the webhook dispatcher look once
        announce_batch(services.redis, services.settings.redis_key_prefix, tenant, batch_id,
                       services.settings.notifications_stream_max_len)
    except redis.exceptions.RedisError as exc:  # the batch is accepted: answer it all the same
        log.warning("could not announce the batch to the webhook dispatcher", error=str(exc))
    return status.HTTP_202_ACCEPTED, {"batch_id": batch_id, "documents": entries}


# --- progress -------------------------------------------------------------------------
def batch_progress(services: Services, tenant: str, batch_id: str) -> dict[str, Any] | None:
    """GET /v1/batches/{id}'s answer, or None (no such batch for this tenant)."""
    found = batch_store(services).read(tenant, batch_id)
    if found is None:
        return None
    created_at, entries = found
    document_ids = list(dict.fromkeys(e["document_id"] for e in entries if e.get("document_id")))
    pipe = services.redis.pipeline(transaction=False)
    for document_id in document_ids:
        pipe.hmget(services.status.record_key(document_id), "tenant", "status", "progress")
    now: dict[str, tuple[str, int]] = {}
    for document_id, (owner, state, progress) in zip(document_ids, pipe.execute()):
        if owner != tenant or not state:
            now[document_id] = (DELETED, 100)
        else:
            final = DocumentStatus(state) in FINAL_STATUSES
            now[document_id] = (state, 100 if final else int(progress or 0))
    counts = {s.value: 0 for s in DocumentStatus} | {DELETED: 0}
    for state, _ in now.values():
        counts[state] = counts.get(state, 0) + 1
    finished = all(state == DELETED or DocumentStatus(state) in FINAL_STATUSES for state, _ in now.values())
    progress = round(sum(p for _, p in now.values()) / len(now)) if now else 100
    documents = []
    for entry in entries:
        shown = {"filename": entry["filename"], "document_id": entry.get("document_id")}
        if entry.get("document_id"):
            shown["status"], shown["progress"] = now[entry["document_id"]]
            shown["duplicate"] = entry.get("duplicate", False)
        else:
            shown["error"] = entry["error"]
        documents.append(shown)
    return {"batch_id": batch_id, "created_at": created_at, "files": len(entries), "total": len(now),
            "rejected": sum(1 for e in entries if not e.get("document_id")), "counts": counts,
            "progress": progress, "finished": finished, "documents": documents}
