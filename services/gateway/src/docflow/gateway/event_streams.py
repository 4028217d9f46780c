"""Following a tenant's event stream (docflow.shared.events) for Server-Sent Events.

Everything here runs on the event loop with redis.asyncio, on a pool of its own: an
idle stream waits in XREAD BLOCK for up to a heartbeat, holding one connection, so
the streams may never draw on the connections uploads and searches need. The pool
has one connection per admitted stream (DOCFLOW_EVENTS_MAX_STREAMS) and each stream
uses one at a time, so a stream never waits for a connection; past the bound a
request is refused (503) before it opens anything.

A document's stream starts with its current state, read in one transaction with the
stream's newest id: everything up to that id is in the state, everything after it
is read from the stream, so no change is missed or told twice. A resumed stream
(`Last-Event-ID`) reads after the client's id instead, or, if entries after it were
trimmed away, says `reset` and starts again from the current state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from docflow.gateway.celery_producer import CONNECT_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS
from docflow.gateway.metrics import EVENT_STREAMS_OPEN
from docflow.shared import events
from docflow.shared.events import DocumentEvent
from docflow.shared.redis_connection import tls_options
from docflow.shared.settings import Settings
from docflow.shared.status import DocumentRecord, StatusStore

# Entries read per round trip: a busy tenant's stream is drained in pages.
READ_COUNT = 200


class TooManyStreams(Exception):
    """DOCFLOW_EVENTS_MAX_STREAMS streams are open in this process."""


class NoSuchDocument(Exception):
    """Not this tenant's document, and no event of it left to tell (404)."""


@dataclass
class Reset:
    """What a `reset` event says: entries after the client's id were trimmed away."""

    last_event_id: str


class EventStreams:
    def __init__(self, settings: Settings, status: StatusStore) -> None:
        self.status = status
        self.max_streams = settings.events_max_streams
        self.block_ms = int(settings.events_heartbeat_seconds * 1000)
        self.redis = redis.asyncio.Redis.from_url(
            settings.redis_url, decode_responses=True, max_connections=settings.events_max_streams,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            # A read waits up to block_ms on the server before it answers.
            socket_timeout=settings.events_heartbeat_seconds + SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1), retry_on_error=[redis.exceptions.ConnectionError],
            **tls_options(settings))
        self.open = 0

    def admit(self) -> None:
        """Count one more open stream, or refuse it (no await: the check and the count
        cannot interleave with another request's on the one event loop)."""
        if self.open >= self.max_streams:
            raise TooManyStreams()
        self.open += 1
        EVENT_STREAMS_OPEN.inc()

    def release(self) -> None:
        self.open -= 1
        EVENT_STREAMS_OPEN.dec()

    async def close(self) -> None:
        await self.redis.aclose()

    # --- one document ---------------------------------------------------------------------
    async def document(self, tenant: str, document_id: str,
                       last_event_id: str | None) -> AsyncIterator[DocumentEvent | Reset]:
        """The document's events, ending after a final one. Checks the document (raising
        NoSuchDocument) before it yields, so the caller can still answer 404."""
        key = self.status.events_key(tenant)
        record, head = await self._snapshot(key, document_id, tenant)
        first: list[DocumentEvent | Reset] = []
        if last_event_id is None or await events.events_lost_after(self.redis, key, last_event_id):
            if record is None:
                raise NoSuchDocument(document_id)
            if last_event_id is not None:
                first.append(Reset(last_event_id))
            first.append(DocumentEvent.from_record(record, head))
        else:
            first = await self._backlog(key, document_id, last_event_id, head)
            # Its stream ended where it went final, unless something happened since.
            if (record is None or _is_final(record)) and not first:
                if record is None:
                    raise NoSuchDocument(document_id)
                return _nothing()
        return self._document_stream(key, document_id, first, head)

    async def _document_stream(self, key: str, document_id: str, first: list[DocumentEvent | Reset],
                               head: str) -> AsyncIterator[DocumentEvent | Reset]:
        for event in first:
            yield event
            if isinstance(event, DocumentEvent) and event.final:
                return
        async for event in self._follow(key, head):
            if event.document_id == document_id:
                yield event
                if event.final:
                    return

    async def _snapshot(self, key: str, document_id: str, tenant: str) -> tuple[DocumentRecord | None, str]:
        """The record and the stream's newest id, in one transaction (the scripts that
        change the record append its event atomically, so the two agree)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.status.record_key(document_id))
            pipe.xrevrange(key, count=1)
            raw, newest = await pipe.execute()
        record = StatusStore.decode(raw) if raw else None
        if record is not None and record.tenant != tenant:
            record = None  # another tenant's document answers like a missing one
        return record, newest[0][0] if newest else events.START

    async def _backlog(self, key: str, document_id: str, after: str, until: str) -> list[DocumentEvent]:
        """The document's events after the client's id up to the snapshot's."""
        found: list[DocumentEvent] = []
        while True:
            page = await events.read_range(self.redis, key, after, until, READ_COUNT)
            found += [event for event in page if event.document_id == document_id]
            if len(page) < READ_COUNT:
                return found
            after = page[-1].id or after

    # --- the whole tenant -----------------------------------------------------------------
    async def tenant(self, tenant: str, last_event_id: str | None) -> tuple[str, list[Reset],
                                                                            AsyncIterator[DocumentEvent]]:
        """(where it starts, resets, events): the tenant's events from now (or after the
        client's id), never ending. A client whose id was trimmed away gets a Reset first,
        then every event still kept."""
        key = self.status.events_key(tenant)
        if last_event_id is None:
            start = await events.head(self.redis, key)
            return start, [], self._follow(key, start)
        if await events.events_lost_after(self.redis, key, last_event_id):
            return events.START, [Reset(last_event_id)], self._follow(key, events.START)
        return last_event_id, [], self._follow(key, last_event_id)

    async def _follow(self, key: str, last_id: str) -> AsyncIterator[DocumentEvent]:
        """Every event after `last_id`, waiting for new ones (a heartbeat at most per read;
        the response's pings keep the connection alive meanwhile)."""
        while True:
            for event in await events.read_after(self.redis, key, last_id, READ_COUNT, self.block_ms):
                last_id = event.id or last_id
                yield event


def _is_final(record: DocumentRecord) -> bool:
    return DocumentEvent.from_record(record, None).final


async def _nothing() -> AsyncIterator[DocumentEvent | Reset]:
    return
    yield  # an async generator that yields nothing


__all__ = ["EventStreams", "NoSuchDocument", "Reset", "TooManyStreams"]
