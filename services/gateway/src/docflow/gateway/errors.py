"""Exception handlers: every error is JSON `{"detail": ...}`, and an unavailable
backing service is a 503 with Retry-After (the client should retry), never a 500.
"""

import redis
import structlog
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError

from docflow.shared.errors import TransientError

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5


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


def install_exception_handlers(app: FastAPI) -> None:
    # kombu wraps broker connection failures at publish time in OperationalError;
    # status-store and result-backend reads raise redis-py's own errors.
    for error in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError):
        app.add_exception_handler(error, _redis_unavailable)
    app.add_exception_handler(TransientError, _storage_unavailable)
    app.add_exception_handler(Exception, _unexpected)
