"""JSON request bodies, read with a size bound and parsed strictly.

FastAPI reads a whole JSON body into memory before validating it (a 100 MB search
body was read, then echoed back in a 105 MB 422), and parses it with `json.loads`'
defaults: `NaN` and `Infinity` become floats (stored, they came back as null), and of
a key given twice the last one silently wins. Routes built with `StrictJsonRoute`
read at most MAX_JSON_BODY_BYTES (413 beyond, before the rest is read) and refuse
both (422 with the reason). The upload's multipart body has its own reader (uploads.py).
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute

# The largest JSON body any route takes: a PATCH's metadata (at most 64 KiB) or a search
# with a long filter, with room to spare.
MAX_JSON_BODY_BYTES = 1024 * 1024


class StrictJsonError(ValueError):
    """A body json.loads would accept that the API refuses; the message says why."""


def strict_json_loads(text: bytes | str, what: str = "the JSON body") -> Any:
    """`json.loads`, refusing duplicate keys and NaN/Infinity (StrictJsonError, its
    message naming `what` was parsed)."""

    def refusing_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for key, item in pairs:
            if key in value:
                raise StrictJsonError(f"{what} repeats the key {key[:100]!r} (given twice in one object)")
            value[key] = item
        return value

    def refusing_constant(name: str) -> None:
        raise StrictJsonError(f"{what} holds {name}, which is not a JSON number")

    return json.loads(text, object_pairs_hook=refusing_duplicate_keys, parse_constant=refusing_constant)


def _too_large() -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"request body too large: at most {MAX_JSON_BODY_BYTES} bytes of JSON")


class StrictJsonRequest(Request):
    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_JSON_BODY_BYTES:
                raise _too_large()
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > MAX_JSON_BODY_BYTES:  # a chunked body without a length
                    raise _too_large()
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = strict_json_loads(body)
            except StrictJsonError as exc:
                # FastAPI lets an HTTPException raised while reading the body through as it is.
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
            except RecursionError:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    "the JSON body nests too deeply") from None
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handler reads its JSON body through StrictJsonRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive, request._send))

        return strict_handler
