"""Everything a request handler needs, built once per app and injected by FastAPI."""

from dataclasses import dataclass
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, Request

from docflow.gateway.auth import ApiKeys, Tenant
from docflow.gateway.celery_producer import CONNECT_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS, create_producer
from docflow.gateway.pipeline import Pipeline
from docflow.gateway.task_registry import TaskRegistry
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

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        """Connects lazily: the app starts (and /healthz answers) with Redis down."""
        client = redis.Redis.from_url(
            settings.redis_url, decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=SOCKET_TIMEOUT_SECONDS,
        )
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
        )

    def close(self) -> None:
        self.redis.close()
        self.celery.close()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
