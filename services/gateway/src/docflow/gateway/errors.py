"""Exception handlers: every error is JSON `{"detail": ...}`, and an unavailable
backing service is a 503 with Retry-After (the client should retry), never a 500.
"""

import json
from typing import Any

import redis
import structlog
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError

from docflow.shared.errors import TransientError

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5
# A 422 says what was wrong and shows at most this much of the offending input:
# FastAPI's default handler echoes the whole value (a 100 MB body came back as a
# 105 MB 422, a 100,000-item filter as 400 KB).
INPUT_EXCERPT_CHARS = 200


def service_unavailable(detail: str) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, content={"detail": detail},
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _redis_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable", error=str(exc), error_type=type(exc).__name__)
    return service_unavailable("the queue and status store (Redis) is unavailable; retry later")


async def _storage_unavailable(_: Request, exc: TransientError) -> JSONResponse:
    log.warning("dependency unavailable", error_code=exc.code.value, error=exc.message)
    return service_unavailable(f"{exc.code.value}: a backing service is unavailable; retry later")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", error_type=type(exc).__name__)
    request_id = structlog.contextvars.get_contextvars().get("request_id", "")
    return JSONResponse(status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
                        content={"detail": f"internal error (request id {request_id})"},
                        headers={"X-Request-ID": request_id})


def input_excerpt(value: Any) -> Any:
    """The input as given if it is short, else the start of its JSON text. Lone
    surrogates are escaped: the response must encode as UTF-8 whatever came in."""
    text = json.dumps(jsonable_encoder(value), ensure_ascii=False, default=str)
    if len(text) > INPUT_EXCERPT_CHARS:
        return text[:INPUT_EXCERPT_CHARS].encode("utf-8", "backslashreplace").decode() + "…"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return value


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{**error, "input": input_excerpt(error["input"])} if "input" in error else error
              for error in exc.errors()]
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                        content={"detail": jsonable_encoder(errors)})


def install_exception_handlers(app: FastAPI) -> None:
    # kombu wraps broker connection failures at publish time in OperationalError;
    # status-store and result-backend reads raise redis-py's own errors.
    for error in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError):
        app.add_exception_handler(error, _redis_unavailable)
    app.add_exception_handler(TransientError, _storage_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)
