"""The real local stack for end-to-end tests: a redis-server, the three workers as
separate Celery processes on their own queues, and the gateway under uvicorn.

Time limits and the visibility timeout are shortened (but keep their ordering) so
that a message held by a killed worker is redelivered within seconds.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    # Maintenance limits count towards the visibility timeout too (settings).
    "DOCFLOW_MAINTAIN_SOFT_TIME_LIMIT": "40",
    "DOCFLOW_MAINTAIN_TIME_LIMIT": "45",
    "DOCFLOW_VISIBILITY_TIMEOUT": "50",
    # Documents submitted as a URL are fetched from pages the tests serve on 127.0.0.1.
    "DOCFLOW_ALLOW_PRIVATE_URLS": "true",
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with own_stack(tmp_path_factory, "stack", STACK_ENV) as local:
        yield local


class Api:
    """A tenant's view of the gateway over real HTTP."""

    def __init__(self, base_url: str, key: str, tenant: str) -> None:
        self.key, self.tenant = key, tenant
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60)

    def upload(self, filename: str, data: bytes, metadata: str | None = None) -> str:
        """A new document, even if another test of the session already uploaded the same
        bytes (on_duplicate=new): each test follows its own document."""
        fields = {"metadata": metadata} if metadata else None
        response = self.http.post("/v1/documents", files={"file": (filename, data)}, data=fields,
                                  params={"on_duplicate": "new"})
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

    def search(self, query: str, top_k: int = 5, **fields) -> list[dict]:
        """`fields`: the request's other fields (mode, filter)."""
        response = self.http.post("/v1/search", json={"query": query, "top_k": top_k, **fields})
        assert response.status_code == 200, response.text
        return response.json()["results"]


@pytest.fixture(scope="session")
def api_a(stack: LocalStack) -> Api:
    return Api(stack.gateway_url, KEY_A, TENANT_A)


@pytest.fixture(scope="session")
def api_b(stack: LocalStack) -> Api:
    return Api(stack.gateway_url, KEY_B, TENANT_B)


# --- private stacks with their own settings (the reliability tests) -------------------------
ADMIN_KEY = "e2e-admin-key"
FIGURES_DIR = Path(__file__).resolve().parents[2] / ".data" / "reliability"


def write_figures(name: str, figures: dict) -> None:
    """Keep a reliability test's figures (docs/reliability.md quotes the last run's)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{name} figures:", json.dumps(figures))


@contextmanager
def own_stack(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str],
              redis_url: str | None = None) -> Iterator[LocalStack]:
    """A second stack for one module, with settings the session stack must not have
    (short retries, tiny limits...). Use it module-scoped: this 2-core machine runs at
    most one of them beside the session stack."""
    local = LocalStack(data_dir=Path(tmp_path_factory.mktemp(name)), env=env, redis_url=redis_url)
    try:
        local.start()
        yield local
    finally:
        local.stop()
        for log in sorted(local.logs_dir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            errors = [line for line in lines if '"level": "error"' in line][-5:]
            if errors:
                print(f"\n--- {name}/{log.name}: last errors ---\n" + "\n".join(errors))


class Admin:
    """An operator's view of a gateway (DOCFLOW_ADMIN_API_KEYS)."""

    def __init__(self, base_url: str, key: str = ADMIN_KEY) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def dead_letters(self) -> list[dict]:
        response = self.http.get("/v1/admin/dead-letters", params={"limit": 1000})
        assert response.status_code == 200, response.text
        return response.json()["dead_letters"]

    def dead_letter_for(self, document_id: str) -> dict:
        letters = [d for d in self.dead_letters() if d["document_id"] == document_id]
        assert len(letters) == 1, f"expected one dead letter for {document_id}: {letters}"
        return letters[0]

    def replay(self, letter_id: str) -> dict:
        response = self.http.post(f"/v1/admin/dead-letters/{letter_id}/replay")
        assert response.status_code == 202, response.text
        return response.json()

