"""Liveness, readiness and metrics: unauthenticated, for the platform.

Readiness covers what the gateway itself needs to accept a document: Redis (queue
and status) and object storage. Workers are deliberately not part of it by
default: KEDA scales them to zero when their queues are empty, and a gateway that
went unready whenever that happened would refuse uploads that would simply queue.
`?indexer=true` additionally requires a live worker consuming the index queue —
the vector store is only reachable through it, since the gateway never imports a
vector-store client — for smoke tests and operators.
"""

from collections.abc import Callable
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse

from docflow.gateway.dependencies import Services, ServicesDep
from docflow.gateway.metrics import QueueCollector, metrics_response
from docflow.gateway.schemas import Health, Readiness
from docflow.shared.names import Queue

router = APIRouter(tags=["health"])

OK = "ok"
INSPECT_TIMEOUT_SECONDS = 1.0


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready", with its reason
        return f"failed: {type(exc).__name__}: {exc}"
    return OK


def _live_indexers(services: Services) -> int:
    """Workers answering a broadcast within the timeout that consume the index queue."""
    replies = services.celery.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).active_queues() or {}
    return sum(1 for queues in replies.values() if any(q.get("name") == Queue.INDEX.value for q in queues))


def _check_indexer(services: Services) -> str:
    try:
        workers = _live_indexers(services)
    except Exception as exc:
        return f"failed: {type(exc).__name__}: {exc}"
    return OK if workers else f"failed: no live worker consumes {Queue.INDEX.value}"


# The probes' blocking checks run on threads of their own, never in the request pool:
# with every request thread waiting on workers, a probe must still answer at once, or
# the platform restarts a gateway that is merely busy.
_PROBE_THREADS = anyio.CapacityLimiter(4)


async def _in_probe_thread(function: Callable[..., str], *args: object) -> str:
    return await anyio.to_thread.run_sync(function, *args, limiter=_PROBE_THREADS)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (no dependency is checked); on the event loop, so it
    answers however busy the request threads are."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(
    services: ServicesDep,
    indexer: Annotated[bool, Query(description="Also require a live indexer worker")] = False,
) -> JSONResponse:
    checks = {"redis": await _in_probe_thread(_check, services.redis.ping),
              "storage": await _in_probe_thread(_check, services.storage.ping)}
    if indexer:
        checks["indexer"] = (await _in_probe_thread(_check_indexer, services) if checks["redis"] == OK
                             else "failed: skipped, Redis is unavailable")
    failed = sorted(name for name, result in checks.items() if result != OK)
    if failed:
        body = Readiness(status="not ready", checks=checks, detail=f"not ready: {', '.join(failed)} failed")
        return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": "5"})
    return JSONResponse(Readiness(status="ready", checks=checks).model_dump(exclude_none=True))


@router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep) -> Response:
    """The gateway's own metrics and, read from Redis now, the queues' (docs/metrics.md)."""
    return metrics_response(QueueCollector(services.redis, services.settings.redis_key_prefix))
