"""`docflow ingest` follows its documents by the gateway's event stream, and polls only
when the stream is not available (real gateway over HTTP, real Redis)."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from structlog.testing import capture_logs

from docflow.cli.events import parse
from docflow.gateway.main import create_app
from docflow.shared.settings import Settings

from .conftest import API_KEY, OTHER_TENANTS_KEY, ServedGateway, _serve
from .test_cli import docflow, fake_pipeline, text_file  # noqa: F401 (fixtures)

# Longer than the test's --timeout: were the CLI polling, it would see the documents
# queued once and then wait until it times out.
NEVER_POLLS = "600"


def requests_for(served: ServedGateway, method: str, path_part: str) -> int:
    return sum(1 for line in served.request_log if line[0] == method and path_part in line[1])


@pytest.fixture
def gateway_overrides() -> dict:
    """Settings a test changes (it parametrizes this name)."""
    return {}


@pytest.fixture
def counted_gateway(redis_server, redis_client: redis.Redis, tmp_path: Path,
                    gateway_overrides: dict) -> Iterator[ServedGateway]:
    """A served gateway that records each request's method and path."""
    settings = Settings(redis_url=redis_server.url, storage_path=tmp_path / "storage",
                        api_keys=f"{API_KEY}=tenant-a,{OTHER_TENANTS_KEY}=tenant-b", **gateway_overrides)
    app = create_app(settings)
    log: list[tuple[str, str]] = []

    @app.middleware("http")
    async def record(req, call_next):
        log.append((req.method, req.url.path))
        return await call_next(req)

    with capture_logs():
        for served in _serve(app, redis_client):
            served.request_log = log
            yield served


def test_ingest_follows_the_event_stream_instead_of_polling(counted_gateway, fake_pipeline, text_file,
                                                            tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("this one will fail\n")
    started = time.monotonic()

    result = docflow(counted_gateway, "ingest", "--poll-interval", NEVER_POLLS, "--timeout", "20",
                     str(text_file), str(bad))

    assert time.monotonic() - started < 15, result.output
    assert result.exit_code == 1, result.output  # bad.txt failed
    assert "completed" in result.stdout and "corrupt_file: xref table is broken" in result.stdout
    assert requests_for(counted_gateway, "GET", "/v1/events") == 1
    # One read of each document's state, when the stream opened; the rest came as events.
    assert requests_for(counted_gateway, "GET", "/v1/documents/") == 2


@pytest.mark.parametrize("gateway_overrides", [{"events_max_streams": 1}])
def test_ingest_polls_when_the_gateway_has_no_stream_to_spare(counted_gateway, fake_pipeline, text_file):
    # The gateway's one stream is taken: the CLI gets 503 and falls back to polling.
    with httpx.Client(base_url=counted_gateway.url, headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=30) as other, other.stream("GET", "/v1/events") as held:
        assert held.status_code == 200
        result = docflow(counted_gateway, "ingest", "--poll-interval", "0.05", "--timeout", "20",
                         str(text_file))

    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert requests_for(counted_gateway, "GET", "/v1/documents/") >= 2  # polled


def test_the_parser_reads_what_the_gateway_sends():
    lines = iter(["event: ready", "id: 5-0", "data: {}", "", ": ping", "",
                  "id: 6-0", "event: progress", 'data: {"document_id": "d", "progress": 20}', "",
                  "event: reset", 'data: {"last_event_id": "1-0"}', ""])
    events = list(parse(lines))
    assert [(e.event, e.id) for e in events] == [("ready", "5-0"), ("progress", "6-0"), ("reset", None)]
    assert events[1].data == {"document_id": "d", "progress": 20}
