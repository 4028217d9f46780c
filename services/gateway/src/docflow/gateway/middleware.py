"""Per-request context: a request id on every log line and response, plus metrics.

A pure ASGI middleware (not BaseHTTPMiddleware) so the structlog context it binds
is the one the endpoint runs in, and streaming request bodies pass straight through.
"""

import re
import time
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docflow.gateway.metrics import REQUEST_SECONDS, REQUESTS

REQUEST_ID_HEADER = "X-Request-ID"
EVENT_STREAM = "text/event-stream"
# A caller's id is echoed into logs and headers: accept only plain tokens.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

log = structlog.get_logger("docflow.gateway.access")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status_code = 500  # if the app raises before answering
        # An event stream's answer is its headers: the stream then stays open for
        # minutes, and timing it to its end would swamp the route's latency histogram.
        answered_at: float | None = None

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code, answered_at
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, request_id)
                if headers.get("content-type", "").startswith(EVENT_STREAM):
                    answered_at = time.perf_counter()
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            ended = time.perf_counter()
            elapsed = ended - started
            route = _route_template(scope)
            REQUESTS.labels(scope["method"], route, str(status_code)).inc()
            REQUEST_SECONDS.labels(scope["method"], route).observe((answered_at or ended) - started)
            log.info("request", method=scope["method"], path=scope["path"], status=status_code,
                     duration_ms=round(elapsed * 1000, 1))
            # Context is left bound: an unhandled error's 500 handler runs after us
            # (outermost) and still needs the request id. Each request is its own
            # task with its own context, cleared again at the start above.
