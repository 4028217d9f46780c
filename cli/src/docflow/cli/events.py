"""Following documents by the gateway's event stream (`GET /v1/events`, Server-Sent
Events) instead of asking for each one's status again and again.

One connection carries every change of the tenant's documents; the ones being followed
are picked out by id. The stream is opened first and each document's state read after
its `ready` event, so a change made in between is in the state or in the stream, never
in neither. After a dropped connection the stream is resumed with `Last-Event-ID`; a
`reset` (events were trimmed before they were read) reads every state again. Any
other failure (an old gateway without the route, 503 when its streams are all taken,
a broken stream) returns False, and the caller polls instead.
"""

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from docflow.cli.client import ApiError, GatewayClient, GatewayUnreachable

# The longest a read waits for a line: the gateway sends a heartbeat every 15 s by
# default (DOCFLOW_EVENTS_HEARTBEAT_SECONDS), so a silent minute means a dead connection.
MAX_SILENCE_SECONDS = 60.0


@dataclass
class ServerEvent:
    event: str
    data: dict[str, Any]
    id: str | None = None


def parse(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Events from the stream's lines: only what docflow's gateway sends (`event`, `id`,
    one `data` line of JSON; `:` comments are heartbeats)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "event" in fields or "data" in fields:
                yield ServerEvent(fields.get("event", "message"), json.loads(fields.get("data") or "{}"),
                                  fields.get("id"))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


class Follower:
    """Keeps the outcomes being followed (anything with `document_id` and `finished`)
    current: `refresh` reads one's state, `apply` applies an event to one, and `changed`
    is told after either."""

    def __init__(self, client: GatewayClient, outcomes: list[Any], changed: Callable[[Any], None],
                 refresh: Callable[[Any], None], apply: Callable[[Any, ServerEvent], None]) -> None:
        self.client, self.changed, self.refresh, self.apply = client, changed, refresh, apply
        self.pending = {o.document_id: o for o in outcomes if not o.finished and o.document_id}

    def run(self, deadline: float | None) -> bool:
        """Until every document is final or the deadline passes (True), or the stream
        fails (False: nothing has been lost, the caller polls from here)."""
        last_id: str | None = None
        while self.pending and not _past(deadline):
            try:
                with self.client.events(last_id, _read_timeout(deadline)) as lines:
                    for event in parse(lines):
                        last_id = event.id or last_id
                        self._apply(event)
                        if not self.pending or _past(deadline):
                            return True
            except httpx.ReadTimeout:
                continue  # silent past the deadline or a heartbeat: resume (or stop, above)
            except (ApiError, GatewayUnreachable, httpx.HTTPError, ValueError):
                return False
        return True

    def _apply(self, event: ServerEvent) -> None:
        if event.event in ("ready", "reset"):
            # The stream is open: the states read now, and the events after them, are all.
            for outcome in list(self.pending.values()):
                self._changed(outcome, self.refresh)
            return
        outcome = self.pending.get(event.data.get("document_id"))
        if outcome is not None:
            self._changed(outcome, lambda o: self.apply(o, event))

    def _changed(self, outcome: Any, change: Callable[[Any], None]) -> None:
        change(outcome)
        self.changed(outcome)
        if outcome.finished:
            self.pending.pop(outcome.document_id, None)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _read_timeout(deadline: float | None) -> float:
    if deadline is None:
        return MAX_SILENCE_SECONDS
    return max(0.05, min(MAX_SILENCE_SECONDS, deadline - time.monotonic()))
