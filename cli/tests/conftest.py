"""The real gateway app served by uvicorn in a thread, on a free port, with real Redis."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import uvicorn
from fastapi import FastAPI
from structlog.testing import capture_logs

from docflow.devstack.processes import free_port
from docflow.gateway.dependencies import Services
from docflow.gateway.main import create_app
from docflow.shared.settings import Settings
from docflow.shared.status import StatusStore

API_KEY = "cli-key-5be1"
OTHER_TENANTS_KEY = "cli-key-other"


@dataclass
class ServedGateway:
    url: str
    app: FastAPI
    redis: redis.Redis

    @property
    def services(self) -> Services:
        return self.app.state.services

    @property
    def status_store(self) -> StatusStore:
        return StatusStore(self.redis)

    def cli_args(self, api_key: str = API_KEY) -> list[str]:
        return ["--url", self.url, "--api-key", api_key]


@pytest.fixture
def served_gateway(redis_server, redis_client: redis.Redis, tmp_path: Path) -> Iterator[ServedGateway]:
    settings = Settings(
        redis_url=redis_server.url, storage_path=tmp_path / "storage",
        api_keys=f"{API_KEY}=tenant-a,{OTHER_TENANTS_KEY}=tenant-b", search_timeout_seconds=0.5,
    )
    # The gateway runs in this process: keep its log lines out of the output the
    # CliRunner captures (unconfigured structlog prints to whatever sys.stdout is).
    with capture_logs():
        yield from _serve(create_app(settings), redis_client)


def _serve(app: FastAPI, redis_client: redis.Redis) -> Iterator[ServedGateway]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn exited while starting"
        time.sleep(0.02)
    yield ServedGateway(url=f"http://127.0.0.1:{port}", app=app, redis=redis_client)
    server.should_exit = True
    thread.join(10)
