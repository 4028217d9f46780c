"""The gateway's ASGI app factory and its `docflow-gateway` entry point."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import structlog
import uvicorn
from fastapi import FastAPI

from docflow.gateway.dependencies import Services
from docflow.gateway.errors import install_exception_handlers
from docflow.gateway.middleware import RequestContextMiddleware
from docflow.gateway.recovery import start_recovery
from docflow.gateway.routers import admin as admin_routes
from docflow.gateway.routers import batches as batch_routes
from docflow.gateway.routers import console
from docflow.gateway.routers import dead_letters
from docflow.gateway.routers import reembed as reembed_routes
from docflow.gateway.routers import documents, events, health, search, tasks
from docflow.gateway.routers import webhooks as webhook_routes
from docflow.shared.logging import configure_logging
from docflow.shared.settings import Settings, get_settings

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The pool FastAPI runs sync handlers in; the Redis pools are sized to it.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.gateway_threads
        recovery = start_recovery(services)  # documents whose queue message was lost
        yield
        if recovery is not None:
            recovery.cancel()
        await services.close()

    app = FastAPI(
        title="docflow gateway",
        summary="Upload documents, follow their processing, search them.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.services = services
    if not services.api_keys.configured:
        log.warning("no API keys configured (DOCFLOW_API_KEYS): every /v1 request will get 401")
    install_exception_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    for router in (documents.router, events.router, search.router, tasks.router, health.router):
        app.include_router(router)
    app.include_router(batch_routes.router)
    app.include_router(webhook_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(dead_letters.router)
    app.include_router(reembed_routes.router)
    app.include_router(console.router)  # the browser console at /console (docs/architecture.md)
    return app


def run() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    # Our middleware logs each request with its request id; uvicorn's access log
    # would only repeat it without one. log_config=None keeps structlog's handlers.
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                log_config=None, access_log=False)


if __name__ == "__main__":
    run()
