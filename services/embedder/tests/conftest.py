"""Fixtures for the embedder's tests: a configured pipeline and a stand-in embeddings API."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from docflow.embedder import loaded_provider
from docflow.shared.settings import Settings, get_settings


def reset_embedder_process() -> None:
    """Forget settings, the loaded provider and every task's cached connections."""
    import docflow.embedder.tasks  # noqa: F401  registers the tasks on the app
    from docflow.embedder.worker import app

    get_settings.cache_clear()
    loaded_provider.forget_provider()
    for task in app.tasks.values():
        if hasattr(task, "reset_resources"):
            task.reset_resources()


@pytest.fixture
def configure_embedder(redis_server, redis_client, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Settings]]:
    """Configure this process as an embedder worker: `configure_embedder(DOCFLOW_X="...")`.

    Defaults: the test redis-server, local storage in tmp_path, the hashing provider.
    """
    def configure(**env: str) -> Settings:
        defaults = {
            "DOCFLOW_REDIS_URL": redis_server.url,
            "DOCFLOW_STORAGE_BACKEND": "local",
            "DOCFLOW_STORAGE_PATH": str(tmp_path / "storage"),
            "DOCFLOW_EMBEDDER": "hash",
            "DOCFLOW_HASH_DIMENSIONS": "64",
        }
        for name, value in {**defaults, **env}.items():
            monkeypatch.setenv(name, value)
        reset_embedder_process()
        return get_settings()

    yield configure
    monkeypatch.undo()
    reset_embedder_process()


@pytest.fixture
def pipeline_env(configure_embedder) -> Settings:
    return configure_embedder()


@dataclass
class FakeEmbeddingsAPI:
    """What the stand-in server saw, and how it should answer next."""

    url: str
    requests: list[dict] = field(default_factory=list)
    fail_with: int | None = None
    error_body: str = '{"error": {"message": "bad request"}}'
    delay_seconds: float = 0.0
    dimensions: int = 3


def _fake_vector(text: str, dimensions: int) -> list[float]:
    # Deliberately not unit length: the provider must normalise.
    return [float(len(text) + 1)] + [float(i + 2) for i in range(dimensions - 1)]


@pytest.fixture
def fake_embeddings_api() -> Iterator[FakeEmbeddingsAPI]:
    """A local OpenAI-compatible `/v1/embeddings` on 127.0.0.1, on a free port.

    It stands in for a remote OpenAI-compatible service (OpenAI, TEI, vLLM, Ollama),
    which cannot be reached from here. It answers with `data` in reverse order, as
    the API permits, so the client must sort by `index`.
    """
    state: FakeEmbeddingsAPI

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"path": self.path, "body": body,
                                   "authorization": self.headers.get("Authorization")})
            time.sleep(state.delay_seconds)
            if state.fail_with is not None:
                return self._send(state.fail_with, state.error_body.encode())
            data = [{"object": "embedding", "index": i, "embedding": _fake_vector(text, state.dimensions)}
                    for i, text in enumerate(body["input"])]
            payload = {"object": "list", "model": body["model"], "data": list(reversed(data)),
                       "usage": {"prompt_tokens": 1, "total_tokens": 1}}
            self._send(200, json.dumps(payload).encode())

        def _send(self, status: int, content: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = FakeEmbeddingsAPI(url=f"http://127.0.0.1:{server.server_port}/v1")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)
