"""Server-Sent Events over real HTTP (the gateway under uvicorn, real Redis): a document's
stream, resuming with Last-Event-ID, trimmed ids, tenancy, the tenant's stream, bounds.

The workers are played by the test through the status store, so each change happens
exactly when the test says.
"""

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI

from docflow.gateway.main import create_app
from docflow.shared.errors import ErrorCode
from docflow.shared.settings import Settings
from docflow.shared.status import DocumentError, DocumentRecord, DocumentStatus, StatusStore, utcnow

from .conftest import KEYS, TEXT_DOCUMENT
from .sse_client import open_status, served, sse


class Api:
    def __init__(self, url: str, app: FastAPI) -> None:
        self.url, self.app = url, app

    @staticmethod
    def auth(tenant: str = "tenant-a") -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[tenant]}"}

    def upload(self, tenant: str = "tenant-a") -> str:
        # on_duplicate=new: the tests upload the same bytes again and mean a new document.
        response = httpx.post(f"{self.url}/v1/documents", headers=self.auth(tenant),
                              params={"on_duplicate": "new"},
                              files={"file": ("notes.txt", TEXT_DOCUMENT)}, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["document_id"]

    def document_stream(self, document_id: str, tenant: str = "tenant-a", last_event_id: str | None = None):
        return sse(self.url, f"/v1/documents/{document_id}/events", self.auth(tenant), last_event_id)

    def tenant_stream(self, tenant: str = "tenant-a", last_event_id: str | None = None):
        return sse(self.url, "/v1/events", self.auth(tenant), last_event_id)


@pytest.fixture
def serve(settings: Settings) -> Iterator:
    """Serve a gateway with some settings changed: `serve(events_max_streams=1)`."""
    servers: list[Any] = []

    def start(**overrides: Any) -> Api:
        app = create_app(settings.model_copy(update=overrides))
        server = served(app)
        servers.append(server)
        return Api(server.__enter__(), app)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def api(serve) -> Api:
    return serve()


@pytest.fixture
def store(redis_client: redis.Redis) -> StatusStore:
    return StatusStore(redis_client)


def run_to_completion(store: StatusStore, document_id: str, version: int = 1) -> None:
    """What the three stages write for a document, in order."""
    store.begin_stage(document_id, version, "extract", DocumentStatus.EXTRACTING, 0)
    store.update(document_id, version, progress=20, pages=2)
    store.begin_stage(document_id, version, "embed", DocumentStatus.EMBEDDING, 40)
    store.update(document_id, version, progress=60, chunks=5)
    store.begin_stage(document_id, version, "index", DocumentStatus.INDEXING, 80)
    store.complete(document_id, version, vectors=5)


STAGES_IN_ORDER = ["stage", "progress", "stage", "progress", "stage", "completed"]


def test_a_documents_stream_starts_with_its_state_and_shows_each_stage_in_order_until_completed(api, store):
    document_id = api.upload()
    with api.document_stream(document_id) as stream:
        [state] = stream.take(1)
        assert (state.event, state.data["status"], state.data["version"]) == ("state", "queued", 1)
        run_to_completion(store, document_id)
        rest = stream.rest()  # returns only because the server ends the stream

    assert [e.event for e in rest] == STAGES_IN_ORDER
    assert [e.data["stage"] for e in rest if e.event == "stage"] == ["extract", "embed", "index"]
    assert [e.data["progress"] for e in rest] == [0, 20, 40, 60, 80, 100]
    assert rest[-1].data | {"timestamp": None} == {
        "type": "completed", "document_id": document_id, "status": "completed", "stage": "index",
        "progress": 100,
        "pages": 2, "chunks": 5, "vectors": 5, "version": 1, "error": None, "timestamp": None}
    ids = [state.id, *(e.id for e in rest)]
    assert len(set(ids)) == len(ids) and all(ids)


def test_a_final_document_gives_its_state_and_ends(api, store):
    document_id = api.upload()
    broken = DocumentError(code=ErrorCode.CORRUPT_FILE, message="xref broken", stage="extract")
    store.fail(document_id, 1, broken)
    with api.document_stream(document_id) as stream:
        events = stream.rest()
    assert [(e.event, e.data["status"]) for e in events] == [("state", "failed")]
    assert events[0].data["error"] == {"code": "corrupt_file", "message": "xref broken", "stage": "extract"}


def test_a_deleted_document_ends_its_stream(api, store):
    document_id = api.upload()
    with api.document_stream(document_id) as stream:
        stream.take(1)
        store.delete(document_id, "tenant-a")
        assert [(e.event, e.data["status"]) for e in stream.rest()] == [("deleted", None)]


@pytest.mark.parametrize("disconnect_after", [1, 2, 4])
def test_resuming_after_a_disconnect_gives_every_later_event_exactly_once(api, store, disconnect_after):
    document_id = api.upload()
    other = api.upload()  # its events interleave in the tenant's stream
    with api.document_stream(document_id) as stream:
        stream.take(1)
        store.begin_stage(document_id, 1, "extract", DocumentStatus.EXTRACTING, 0)
        store.update(document_id, 1, progress=20, pages=2)
        store.begin_stage(document_id, 1, "embed", DocumentStatus.EMBEDDING, 40)
        seen = stream.take(disconnect_after - 1)
        last_id = stream.last_id
    # Disconnected: the rest happens while nobody listens.
    store.begin_stage(other, 1, "extract", DocumentStatus.EXTRACTING, 0)
    store.update(document_id, 1, progress=60, chunks=5)
    store.begin_stage(document_id, 1, "index", DocumentStatus.INDEXING, 80)
    store.complete(other, 1, pages=1, chunks=1, vectors=1)
    store.complete(document_id, 1, vectors=5)

    with api.document_stream(document_id, last_event_id=last_id) as resumed:
        later = resumed.rest()

    every = [e.event for e in seen + later]
    assert every == STAGES_IN_ORDER, (disconnect_after, every)
    assert {e.data["document_id"] for e in later} == {document_id}
    assert len({e.id for e in seen + later}) == len(seen + later)


def test_resuming_a_stream_that_had_ended_sends_nothing_more(api, store):
    document_id = api.upload()
    with api.document_stream(document_id) as stream:
        stream.take(1)
        run_to_completion(store, document_id)
        stream.rest()
        last_id = stream.last_id
    with api.document_stream(document_id, last_event_id=last_id) as resumed:
        assert resumed.rest() == []


def test_a_trimmed_last_event_id_gets_a_reset_then_the_current_state(serve, redis_client):
    api = serve(events_stream_max_len=100)
    store = StatusStore(redis_client, events_max_len=100)
    document_id = api.upload()
    with api.document_stream(document_id) as stream:
        stream.take(1)
        store.begin_stage(document_id, 1, "extract", DocumentStatus.EXTRACTING, 0)
        stream.take(1)
        last_id = stream.last_id
    store.update(document_id, 1, progress=30, pages=4)  # lost to the trimming below
    for n in range(300):  # other documents' events push the client's out of the stream
        now = utcnow()
        store.create(DocumentRecord(document_id=f"filler{n}", tenant="tenant-a", filename="f.txt",
                                    content_type="text/plain", size_bytes=1, original_key="k",
                                    created_at=now, updated_at=now))

    with api.document_stream(document_id, last_event_id=last_id) as resumed:
        reset, state = resumed.take(2)
        assert reset.event == "reset" and reset.data == {"last_event_id": last_id} and reset.id is None
        assert (state.event, state.data["status"], state.data["progress"], state.data["pages"]) == \
            ("state", "extracting", 30, 4)
        store.complete(document_id, 1, vectors=3)
        assert [e.event for e in resumed.rest()] == ["completed"]


def test_another_tenants_document_is_not_found(api):
    document_id = api.upload(tenant="tenant-b")
    for last_event_id in (None, "0-0"):
        status, _, body = open_status(api.url, f"/v1/documents/{document_id}/events",
                                      {**api.auth("tenant-a"), **({"Last-Event-ID": last_event_id}
                                                                  if last_event_id else {})})
        assert status == 404, body
    assert open_status(api.url, "/v1/documents/nope/events", api.auth())[0] == 404
    status, _, body = open_status(api.url, f"/v1/documents/{document_id}/events",
                                  {**api.auth("tenant-b"), "Last-Event-ID": "not-an-id"})
    assert status == 400 and "Last-Event-ID" in body
    assert open_status(api.url, "/v1/events", {})[0] == 401


def test_the_tenant_stream_has_only_its_tenants_events_and_resumes(api, store):
    with api.tenant_stream() as stream:
        [ready] = stream.take(1)
        assert ready.event == "ready" and ready.id
        mine = api.upload()
        api.upload(tenant="tenant-b")
        store.begin_stage(mine, 1, "extract", DocumentStatus.EXTRACTING, 0)
        created, begun = stream.take(2)
        assert [(created.event, created.data["document_id"]), (begun.event, begun.data["status"])] == \
            [("created", mine), ("stage", "extracting")]
        last_id = stream.last_id
    second = api.upload()
    run_to_completion(store, mine)

    with api.tenant_stream(last_event_id=last_id) as resumed:
        later = resumed.take(6)
    assert [e.event for e in later] == ["created", *STAGES_IN_ORDER[1:]]
    assert [e.data["document_id"] for e in later] == [second] + [mine] * 5


def test_idle_streams_carry_heartbeats(serve):
    api = serve(events_heartbeat_seconds=0.2)
    with api.tenant_stream() as stream:
        stream.take(1)
        deadline = time.monotonic() + 5
        pings = 0
        for line in stream._lines:
            pings += line.startswith(":")
            if pings >= 2:
                break
            assert time.monotonic() < deadline, "no heartbeat"


def test_streams_are_bounded_and_a_closed_client_frees_its_slot(serve):
    api = serve(events_max_streams=1)
    streams = api.app.state.services.events
    document_id = api.upload()
    for _ in range(3):  # more streams one after another than the bound: each frees its slot
        with api.document_stream(document_id) as stream:
            stream.take(1)
            status, headers, _ = open_status(api.url, "/v1/events", api.auth())
            assert status == 503 and headers["retry-after"] == "5"
        deadline = time.monotonic() + 5
        while streams.open:
            assert time.monotonic() < deadline, "the server did not end a stream whose client left"
            time.sleep(0.02)
    metrics = httpx.get(f"{api.url}/metrics", timeout=10).text
    assert "docflow_gateway_event_streams_open 0.0" in metrics


def _latency_samples(route: str) -> tuple[float, float]:
    """(count, sum) of the gateway's request-duration histogram for GET `route`, now."""
    from prometheus_client import REGISTRY

    labels = {"method": "GET", "route": route}
    return (REGISTRY.get_sample_value("docflow_gateway_request_duration_seconds_count", labels) or 0.0,
            REGISTRY.get_sample_value("docflow_gateway_request_duration_seconds_sum", labels) or 0.0)


def test_a_streams_latency_is_the_time_to_its_answer_not_how_long_it_stayed_open(api):
    route = "/v1/documents/{document_id}/events"
    document_id = api.upload()
    count_before, sum_before = _latency_samples(route)
    with api.document_stream(document_id) as stream:
        stream.take(1)
        time.sleep(3)  # the stream stays open, as a client watching a document keeps it
    deadline = time.monotonic() + 30  # the server sees the disconnect at its next write
    while _latency_samples(route)[0] == count_before and time.monotonic() < deadline:
        time.sleep(0.1)
    count_after, sum_after = _latency_samples(route)
    assert count_after == count_before + 1
    assert sum_after - sum_before < 1.5, "the three seconds the stream stayed open were counted as latency"
