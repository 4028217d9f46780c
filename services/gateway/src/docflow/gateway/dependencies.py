"""Everything a request handler needs, built once per app and injected by FastAPI."""

from dataclasses import dataclass
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, Request

from docflow.gateway.auth import ApiKeys, Tenant
from docflow.gateway.celery_producer import CONNECT_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS, create_producer
from docflow.gateway.pipeline import Pipeline
from docflow.gateway.rate_limit import Action, RateLimiter
from docflow.gateway.task_registry import TaskRegistry
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.redis_connection import redis_client
from docflow.shared.settings import Settings
from docflow.shared.status import StatusStore
from docflow.shared.storage import Storage, open_storage

__all__ = ["Services", "ServicesDep", "Tenant", "get_services"]


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    status: StatusStore
    storage: Storage
    celery: Celery
    pipeline: Pipeline
    tasks: TaskRegistry
    api_keys: ApiKeys
    dead_letters: DeadLetterStore
    rate_limiter: RateLimiter

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        """Connects lazily: the app starts (and /healthz answers) with Redis down."""
        client = redis_client(settings, socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                              socket_timeout=SOCKET_TIMEOUT_SECONDS)
        celery = create_producer(settings)
        return cls(
            settings=settings,
            redis=client,
            status=StatusStore(client, settings.redis_key_prefix),
            storage=open_storage(settings),
            celery=celery,
            pipeline=Pipeline(celery),
            tasks=TaskRegistry(client, settings.redis_key_prefix, ttl_seconds=celery.conf.result_expires),
            api_keys=ApiKeys(settings.tenants_by_key),
            dead_letters=DeadLetterStore(client, settings.redis_key_prefix),
            rate_limiter=RateLimiter(client, settings.redis_key_prefix, {
                Action.UPLOAD: settings.upload_rate_limit_per_minute,
                Action.SEARCH: settings.search_rate_limit_per_minute,
            }),
        )

    def close(self) -> None:
        self.redis.close()
        self.celery.close()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
