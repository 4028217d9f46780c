"""Everything a request handler needs, built once per app and injected by FastAPI."""

import threading
from dataclasses import dataclass
from typing import Annotated

import redis
import redis.asyncio
from celery import Celery
from fastapi import Depends, Request
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from docflow.gateway.auth import ApiKeys, Tenant
from docflow.gateway.celery_producer import (
    CONNECT_TIMEOUT_SECONDS,
    SOCKET_TIMEOUT_SECONDS,
    create_producer,
    redis_connections,
)
from docflow.gateway.duplicates import DigestIndex
from docflow.gateway.idempotency import IdempotencyStore
from docflow.gateway.event_streams import EventStreams
from docflow.gateway.pipeline import Pipeline
from docflow.gateway.rate_limit import Action, RateLimiter
from docflow.gateway.reranker import Reranker
from docflow.gateway.task_registry import TaskRegistry
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.redis_connection import redis_client, tls_options
from docflow.shared.settings import Settings
from docflow.shared.status import StatusStore
from docflow.shared.storage import Storage, open_storage

__all__ = ["Services", "ServicesDep", "Tenant", "get_services"]


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    # For the calls made on the event loop (the rate limits), not worth a thread hop.
    redis_async: redis.asyncio.Redis
    status: StatusStore
    storage: Storage
    celery: Celery
    pipeline: Pipeline
    tasks: TaskRegistry
    digests: DigestIndex  # each tenant's originals by SHA-256 (duplicate uploads)
    idempotency: IdempotencyStore  # Idempotency-Key claims and their stored answers
    api_keys: ApiKeys
    dead_letters: DeadLetterStore
    rate_limiter: RateLimiter
    # Searches waiting on workers right now (DOCFLOW_SEARCH_MAX_CONCURRENT per process).
    search_slots: threading.BoundedSemaphore
    reranker: Reranker | None  # None (DOCFLOW_RERANKER=none): search keeps the fused order
    # Server-Sent Event streams, on a Redis pool of their own (DOCFLOW_EVENTS_MAX_STREAMS).
    events: EventStreams

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        """Connects lazily: the app starts (and /healthz answers) with Redis down."""
        client = redis_client(settings, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                              socket_timeout=SOCKET_TIMEOUT_SECONDS, max_connections=redis_connections(settings))
        async_client = redis.asyncio.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            max_connections=redis_connections(settings),
            socket_timeout=SOCKET_TIMEOUT_SECONDS, **tls_options(settings),
            # redis.asyncio does not notice a connection the server closed (a Redis
            # restart) until a command fails on it, where redis-py's sync pool checks
            # before sending: one immediate retry, on a fresh connection, does the same.
            retry=Retry(NoBackoff(), 1), retry_on_error=[redis.exceptions.ConnectionError])
        celery = create_producer(settings)
        status = StatusStore(client, settings.redis_key_prefix, settings.events_stream_max_len,
                             settings.notifications_stream_max_len)
        return cls(
            settings=settings,
            redis=client,
            redis_async=async_client,
            status=status,
            events=EventStreams(settings, status),
            storage=open_storage(settings),
            celery=celery,
            pipeline=Pipeline(celery),
            tasks=TaskRegistry(client, settings.redis_key_prefix, ttl_seconds=celery.conf.result_expires),
            digests=DigestIndex(client, settings.redis_key_prefix),
            idempotency=IdempotencyStore(client, settings.redis_key_prefix, settings.idempotency_ttl_seconds,
                                         settings.idempotency_lease_seconds),
            api_keys=ApiKeys(settings.tenants_by_key),
            dead_letters=DeadLetterStore(client, settings.redis_key_prefix),
            reranker=Reranker.from_settings(settings),
            search_slots=threading.BoundedSemaphore(settings.search_max_concurrent),
            rate_limiter=RateLimiter(async_client, settings.redis_key_prefix, {
                Action.UPLOAD: settings.upload_rate_limit_per_minute,
                Action.SEARCH: settings.search_rate_limit_per_minute,
                Action.REPROCESS: settings.reprocess_rate_limit_per_minute,
            }),
        )

    async def close(self) -> None:
        self.redis.close()
        await self.redis_async.aclose()
        await self.events.close()
        self.celery.close()


# async although it does no I/O: FastAPI would run a sync dependency in its threadpool,
# a thread hop per request for an attribute lookup.
async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
