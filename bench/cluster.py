"""The benchmark's view of a local stack: start it, talk to it, read its processes' memory."""

import shutil
import time
import uuid
from pathlib import Path

import httpx
import redis

from docflow.devstack.stack import LocalStack
from docflow.shared.messages import PipelineMessage, artifact_prefix
from docflow.shared.names import Stage
from docflow.shared.status import DocumentRecord, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

API_KEY, TENANT = "bench-key", "bench"
BASE_ENV = {
    "DOCFLOW_API_KEYS": f"{API_KEY}={TENANT}",
    "DOCFLOW_EMBEDDER": "minilm",
    "DOCFLOW_VECTOR_STORE": "lancedb",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    # The benchmark measures uploads, not the rate limiter's refusals: a budget no
    # run reaches keeps the limiter's Redis round trip in every request.
    "DOCFLOW_UPLOAD_RATE_LIMIT_PER_MINUTE": "100000000",
    "DOCFLOW_SEARCH_RATE_LIMIT_PER_MINUTE": "100000000",
}
FINAL = {"completed", "failed", "cancelled"}


def fresh_stack(folder: Path, env: dict[str, str] | None = None) -> LocalStack:
    shutil.rmtree(folder, ignore_errors=True)
    return LocalStack(data_dir=folder, env={**BASE_ENV, **(env or {})})


def pool_pids(stack: LocalStack, stage: Stage) -> list[int]:
    """The worker's pool processes (children of the Celery main process): they run the tasks."""
    pid = stack.workers[stage].pid
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def reset_peak_rss(pids: list[int]) -> None:
    """Linux: writing 5 to clear_refs resets a process's peak RSS (VmHWM) to its current RSS."""
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def peak_rss_mb(pids: list[int]) -> float:
    peaks = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return max(peaks, default=float("nan"))


class Client:
    """The tenant's HTTP client of the gateway."""

    def __init__(self, stack: LocalStack) -> None:
        self.http = httpx.Client(base_url=stack.gateway_url, timeout=60,
                                 headers={"Authorization": f"Bearer {API_KEY}"})

    def upload(self, filename: str, data: bytes) -> dict:
        # on_duplicate=new: benches upload the same bytes again and mean new work each time.
        response = self.http.post("/v1/documents", files={"file": (filename, data)},
                                  params={"on_duplicate": "new"})
        response.raise_for_status()
        return response.json()

    def document(self, document_id: str) -> dict:
        response = self.http.get(f"/v1/documents/{document_id}")
        response.raise_for_status()
        return response.json()

    def wait_all(self, document_ids: list[str], timeout: float, poll: float = 0.25) -> list[dict]:
        """Every document's record once all are final; polls one cheap list request at a time."""
        deadline = time.monotonic() + timeout
        pending = set(document_ids)
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} documents not final after {timeout:.0f}s")
            time.sleep(poll)
            for status in FINAL:
                page = self.http.get("/v1/documents", params={"status": status, "limit": 100}).json()
                pending -= {document["document_id"] for document in page["documents"]}
        return [self.document(document_id) for document_id in document_ids]

    def close(self) -> None:
        self.http.close()


def register_document(stack: LocalStack, name: str, data: bytes, content_type: str,
                      tenant: str = TENANT) -> PipelineMessage:
    """What the gateway does before it enqueues: store the original, create the record."""
    storage = LocalStorage(stack.data_dir / "storage")
    status = StatusStore(redis.Redis.from_url(stack.redis_url, decode_responses=True))
    document_id = uuid.uuid4().hex
    original_key = artifact_prefix(tenant, document_id) + "original"
    storage.put(original_key, data)
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=tenant, filename=name,
                                 content_type=content_type, size_bytes=len(data),
                                 original_key=original_key, created_at=now, updated_at=now))
    return PipelineMessage(document_id=document_id, tenant=tenant, version=1, content_type=content_type,
                           original_key=original_key)


def clone_document(stack: LocalStack, source: PipelineMessage, tenant: str) -> PipelineMessage:
    """A new document record whose message points at `source`'s artifacts (stage runs)."""
    status = StatusStore(redis.Redis.from_url(stack.redis_url, decode_responses=True))
    document_id = uuid.uuid4().hex
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=tenant, filename="clone",
                                 content_type=source.content_type, size_bytes=0,
                                 original_key=source.original_key, created_at=now, updated_at=now))
    return source.model_copy(update={"document_id": document_id, "tenant": tenant})


def settle(stack: LocalStack, messages: list[PipelineMessage]) -> None:
    """Mark documents a stage benchmark left in flight as final (cancelled).

    Otherwise the gateway's recovery would, after its idle time, take them for lost
    and run their whole pipeline again, loading the machine under later measurements.
    """
    status = StatusStore(redis.Redis.from_url(stack.redis_url, decode_responses=True))
    for message in messages:
        status.cancel(message.document_id)


def run_tasks(stack: LocalStack, task_name: str, messages: list[PipelineMessage],
              timeout: float = 900) -> tuple[float, list[dict]]:
    """Send one task per message straight to its stage's queue; seconds until the last ends.
    The documents are settled (made final) afterwards."""
    app = stack.celery()
    try:
        started = time.perf_counter()
        results = [app.send_task(task_name, args=[message.model_dump()]) for message in messages]
        values = [result.get(timeout=timeout, interval=0.02) for result in results]
        seconds = time.perf_counter() - started
        for result in results:
            result.forget()
    finally:
        app.close()
        settle(stack, messages)
    return seconds, values
