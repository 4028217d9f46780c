"""Server-Sent Events: a document's status changes as they happen, or a whole tenant's.

`GET /v1/documents/{id}/events` starts with the document's current state (`event:
state`), then sends each change (`event:` the change's type, docflow.shared.events)
and ends after a final one (completed, failed, cancelled, deleted). `GET /v1/events`
sends every change of the tenant's documents and never ends. Each event's SSE `id` is
its Redis stream entry id: a client that reconnects with `Last-Event-ID` gets every
later event exactly once, or `event: reset` first when entries after its id were
trimmed away (then the document's current state; on the tenant stream, every event
still kept). Idle streams carry `: ping` comments every DOCFLOW_EVENTS_HEARTBEAT_SECONDS.
"""

import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import redis.exceptions
import structlog
from fastapi import APIRouter, Header, HTTPException, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from docflow.gateway.dependencies import ServicesDep, Tenant
from docflow.gateway.event_streams import EventStreams, NoSuchDocument, Reset, TooManyStreams
from docflow.shared.events import STREAM_ID, DocumentEvent, EventType

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["events"])

LastEventId = Annotated[str | None, Header(
    alias="Last-Event-ID", description="Resume after this event id (the SSE `id` last received)")]
_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "A Server-Sent Events stream"},
    400: {"description": "Last-Event-ID is not an event id"},
    503: {"description": "Too many event streams open on this gateway; retry after Retry-After"},
}


class CountedEventSource(EventSourceResponse):
    """An SSE response that gives its stream slot back when it ends, however it ends
    (finished, client gone, cancelled), and not before."""

    def __init__(self, streams: EventStreams, content: AsyncIterator[ServerSentEvent], ping: float,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, ping=ping, headers=headers)
        self._streams = streams

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._streams.release()


def _checked(last_event_id: str | None) -> str | None:
    if last_event_id is not None and not STREAM_ID.match(last_event_id.strip()):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "Last-Event-ID must be an event id as sent (milliseconds-sequence)")
    return last_event_id.strip() if last_event_id else None


def _admitted(streams: EventStreams) -> None:
    try:
        streams.admit()
    except TooManyStreams:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "too many event streams are open on this gateway; retry shortly",
                            headers={"Retry-After": "5"}) from None


def _sse(item: DocumentEvent | Reset) -> ServerSentEvent:
    if isinstance(item, Reset):
        return ServerSentEvent(event=EventType.RESET.value,
                               data=json.dumps({"last_event_id": item.last_event_id}))
    return ServerSentEvent(id=item.id, event=item.type.value, data=item.data())


async def _as_sse(items: AsyncIterator[DocumentEvent | Reset]) -> AsyncIterator[ServerSentEvent]:
    try:
        async for item in items:
            yield _sse(item)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        # Ends the response cleanly; the client reconnects with Last-Event-ID and, once
        # Redis is back, loses nothing (a reconnect meanwhile gets 503).
        log.warning("event stream ended: redis unavailable", error=str(exc))


# Proxies (nginx) buffer responses unless told not to; an event must go out when it happens.
_NO_BUFFERING = {"X-Accel-Buffering": "no"}


@router.get("/documents/{document_id}/events", response_class=EventSourceResponse,
            responses={**_STREAM_RESPONSES, 404: {"description": "No such document for this tenant"}})
async def document_events(document_id: str, services: ServicesDep, tenant: Tenant,
                          last_event_id: LastEventId = None) -> EventSourceResponse:
    """The document's state, then each change of it until a final one (the stream ends)."""
    resume_after = _checked(last_event_id)
    streams = services.events
    _admitted(streams)
    try:
        items = await streams.document(tenant, document_id, resume_after)
    except NoSuchDocument:
        streams.release()
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"document {document_id} not found") from None
    except BaseException:
        streams.release()
        raise
    structlog.contextvars.bind_contextvars(document_id=document_id)
    return CountedEventSource(streams, _as_sse(items), services.settings.events_heartbeat_seconds,
                              _NO_BUFFERING)


@router.get("/events", response_class=EventSourceResponse, responses=_STREAM_RESPONSES)
async def tenant_events(services: ServicesDep, tenant: Tenant,
                        last_event_id: LastEventId = None) -> EventSourceResponse:
    """Every change of the tenant's documents from now on (or after Last-Event-ID); never
    ends. Its first event, `ready`, carries the id to resume from if nothing else came."""
    resume_after = _checked(last_event_id)
    streams = services.events
    _admitted(streams)
    try:
        start, resets, items = await streams.tenant(tenant, resume_after)
    except BaseException:
        streams.release()
        raise

    async def content() -> AsyncIterator[ServerSentEvent]:
        if resume_after is None:
            yield ServerSentEvent(id=start, event=EventType.READY.value, data="{}")
        async for event in _as_sse(_chain(resets, items)):
            yield event

    return CountedEventSource(streams, content(), services.settings.events_heartbeat_seconds, _NO_BUFFERING)


async def _chain(first: list[Reset],
                 rest: AsyncIterator[DocumentEvent]) -> AsyncIterator[DocumentEvent | Reset]:
    for item in first:
        yield item
    async for item in rest:
        yield item
