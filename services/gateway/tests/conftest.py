"""The real gateway app on a real Redis (one flushed database per test) and local storage."""

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from fpdf import FPDF

from docflow.gateway.main import create_app
from docflow.shared.settings import Settings

KEYS = {"tenant-a": "key-a-3f9c1e", "tenant-b": "key-b-77d0aa"}
TEXT_DOCUMENT = b"The quick brown fox reads the docflow handbook.\n" * 20


class Gateway:
    """The app under test plus the requests the tests make again and again."""

    TEXT = TEXT_DOCUMENT

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    @staticmethod
    def auth(tenant: str = "tenant-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[tenant]}"}

    def upload(self, data: bytes = TEXT_DOCUMENT, filename: str = "notes.txt", tenant: str = "tenant-a",
               metadata: str | None = None, on_duplicate: str | None = "new",
               idempotency_key: str | None = None) -> httpx.Response:
        """`on_duplicate` is `new` unless a test says otherwise: most tests upload the same
        bytes again and again and mean a new document each time (None: the API's default)."""
        form = {"metadata": metadata} if metadata is not None else None
        params = {"on_duplicate": on_duplicate} if on_duplicate is not None else None
        headers = {**self.auth(tenant), **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
        return self.client.post("/v1/documents", headers=headers, params=params,
                                files={"file": (filename, data, "application/octet-stream")}, data=form)

    def accepted(self, **kwargs: Any) -> dict[str, Any]:
        response = self.upload(**kwargs)
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, path: str, tenant: str = "tenant-a", **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers=self.auth(tenant), **kwargs)

    def post(self, path: str, tenant: str = "tenant-a", **kwargs: Any) -> httpx.Response:
        return self.client.post(path, headers=self.auth(tenant), **kwargs)

    def delete(self, path: str, tenant: str = "tenant-a") -> httpx.Response:
        return self.client.delete(path, headers=self.auth(tenant))

    @property
    def storage_root(self) -> Path:
        return Path(self.settings.storage_path)


@dataclass
class QueuedMessage:
    """A Celery message as it sits in a queue's Redis list (a kombu JSON envelope)."""

    raw: str

    @property
    def size(self) -> int:
        return len(self.raw.encode())

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.raw)

    @property
    def headers(self) -> dict[str, Any]:
        return self.envelope["headers"]

    @property
    def body(self) -> list[Any]:
        """Celery protocol 2: [args, kwargs, {callbacks, errbacks, chain, chord}]."""
        return json.loads(base64.b64decode(self.envelope["body"]))

    @property
    def task(self) -> str:
        return self.headers["task"]

    @property
    def task_id(self) -> str:
        return self.headers["id"]

    @property
    def args(self) -> list[Any]:
        return self.body[0]

    @property
    def chain(self) -> list[dict[str, Any]]:
        """The signatures still to run after this task, last first (Celery's order)."""
        return self.body[2].get("chain") or []


class Broker:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def length(self, queue: str) -> int:
        return self.client.llen(queue)

    def messages(self, queue: str) -> list[QueuedMessage]:
        """Oldest first (kombu LPUSHes and workers BRPOP)."""
        return [QueuedMessage(raw) for raw in reversed(self.client.lrange(queue, 0, -1))]


def make_pdf(pages: int, text: str = "Page {page}: the quick brown fox reads the docflow handbook.") -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 6, (text.format(page=page) + " ") * 12)
    return bytes(pdf.output())


@pytest.fixture
def settings(redis_server, redis_client, tmp_path: Path) -> Settings:
    """Settings for one test; `redis_client` has flushed the database."""
    return Settings(
        redis_url=redis_server.url,
        storage_path=tmp_path / "storage",
        api_keys=",".join(f"{key}={tenant}" for tenant, key in KEYS.items()),
        search_timeout_seconds=5,
        # Fair sharing off: the tests of other features find every document's message in
        # its stage's document queue (test_fair_share.py turns it on).
        fair_share_interactive_limit=0,
    )


@pytest.fixture
def make_gateway(settings: Settings) -> Iterator:
    """Build a gateway with some settings changed (`make_gateway(max_upload_bytes=10)`)."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> Gateway:
        changed = settings.model_copy(update=overrides)
        client = TestClient(create_app(changed))
        client.__enter__()  # runs the lifespan, as uvicorn would
        clients.append(client)
        return Gateway(client, changed)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def gateway(make_gateway) -> Gateway:
    return make_gateway()


@pytest.fixture
def broker(redis_client: redis.Redis) -> Broker:
    return Broker(redis_client)


@pytest.fixture
def pdf_of_pages():
    return make_pdf
