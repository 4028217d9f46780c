"""A minimal Server-Sent Events reader over httpx for the tests (and a uvicorn-served
gateway: Starlette's TestClient buffers a whole response, so a stream that does not
end would never come back from it)."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from docflow.devstack.processes import free_port


@dataclass
class Event:
    event: str
    data: dict[str, Any]
    id: str | None = None


@dataclass
class SseStream:
    """One open stream; `next()` is the next event (None once the server ended it)."""

    response: httpx.Response
    _lines: Iterator[str]
    _close: Any
    pings: int = 0
    last_id: str | None = None
    received: list[Event] = field(default_factory=list)

    def next(self) -> Event | None:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields or "event" in fields:
                    event = Event(fields.get("event", "message"), json.loads(fields.get("data") or "{}"),
                                  fields.get("id"))
                    self.last_id = event.id or self.last_id
                    self.received.append(event)
                    return event
                continue
            if line.startswith(":"):
                self.pings += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        return None

    def take(self, count: int) -> list[Event]:
        events = [self.next() for _ in range(count)]
        assert None not in events, f"the stream ended early: {events}"
        return events  # type: ignore[return-value]

    def rest(self) -> list[Event]:
        """Every event until the server ends the stream."""
        events = []
        while (event := self.next()) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self._close()


@contextmanager
def sse(base_url: str, path: str, headers: dict[str, str], last_event_id: str | None = None,
        timeout: float = 10.0) -> Iterator[SseStream]:
    """Open `path`; the status must be 200 (see `open_status` otherwise)."""
    sent = {**headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    with httpx.Client(base_url=base_url, timeout=timeout) as client, \
            client.stream("GET", path, headers=sent) as response:
        assert response.status_code == 200, response.read().decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseStream(response, response.iter_lines(), response.close)


def open_status(base_url: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    """The status, headers and body of a request that is refused (not a stream)."""
    with httpx.Client(base_url=base_url, timeout=10) as client, \
            client.stream("GET", path, headers=headers) as response:
        if response.status_code == 200:
            return 200, dict(response.headers), ""
        return response.status_code, dict(response.headers), response.read().decode()


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port: its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
