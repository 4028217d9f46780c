"""The real local stack for end-to-end tests: a redis-server, the three workers as
separate Celery processes on their own queues, and the gateway under uvicorn.

Time limits and the visibility timeout are shortened (but keep their ordering) so
that a message held by a killed worker is redelivered within seconds.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docflow.devstack.stack import LocalStack

KEY_A, KEY_B = "key-tenant-a", "key-tenant-b"
TENANT_A, TENANT_B = "tenant-a", "tenant-b"
FINAL = {"completed", "failed", "cancelled"}

STACK_ENV = {
    "DOCFLOW_API_KEYS": f"{KEY_A}={TENANT_A},{KEY_B}={TENANT_B}",
    "DOCFLOW_EMBEDDER": "minilm",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    "DOCFLOW_EXTRACT_SOFT_TIME_LIMIT": "40",
    "DOCFLOW_EXTRACT_TIME_LIMIT": "45",
    "DOCFLOW_EMBED_SOFT_TIME_LIMIT": "40",
    "DOCFLOW_EMBED_TIME_LIMIT": "45",
    "DOCFLOW_INDEX_SOFT_TIME_LIMIT": "40",
    "DOCFLOW_INDEX_TIME_LIMIT": "45",
    "DOCFLOW_VISIBILITY_TIMEOUT": "50",
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data_dir = Path(tmp_path_factory.mktemp("stack"))
    local = LocalStack(data_dir=data_dir, env=STACK_ENV)
    try:
        local.start()
        yield local
    finally:
        local.stop()
        # On failure the workers' own words are the fastest diagnosis.
        for log in sorted(local.logs_dir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            errors = [line for line in lines if '"level": "error"' in line][-5:]
            if errors:
                print(f"\n--- {log.name}: last errors ---\n" + "\n".join(errors))


class Api:
    """A tenant's view of the gateway over real HTTP."""

    def __init__(self, base_url: str, key: str, tenant: str) -> None:
        self.key, self.tenant = key, tenant
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60)

    def upload(self, filename: str, data: bytes, metadata: str | None = None) -> str:
        fields = {"metadata": metadata} if metadata else None
        response = self.http.post("/v1/documents", files={"file": (filename, data)}, data=fields)
        assert response.status_code == 202, response.text
        return response.json()["document_id"]

    def document(self, document_id: str) -> dict:
        response = self.http.get(f"/v1/documents/{document_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_final(self, document_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.document(document_id)
            if record["status"] in FINAL:
                return record
            time.sleep(0.25)
        raise AssertionError(f"{document_id} not final after {timeout}s: {record}")

    def wait_status(self, document_id: str, status: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.document(document_id)
            if record["status"] == status:
                return record
            assert record["status"] not in FINAL, record
            time.sleep(0.05)
        raise AssertionError(f"{document_id} never reached {status}")

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        response = self.http.post("/v1/search", json={"query": query, "top_k": top_k})
        assert response.status_code == 200, response.text
        return response.json()["results"]


@pytest.fixture(scope="session")
def api_a(stack: LocalStack) -> Api:
    return Api(stack.gateway_url, KEY_A, TENANT_A)


@pytest.fixture(scope="session")
def api_b(stack: LocalStack) -> Api:
    return Api(stack.gateway_url, KEY_B, TENANT_B)
