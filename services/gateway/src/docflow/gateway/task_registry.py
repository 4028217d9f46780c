"""Which document (and so which tenant) a pipeline task id belongs to.

`GET /v1/tasks/{task_id}` must not reveal another tenant's task, and Celery's result
backend knows nothing of tenants; this small Redis hash per task id does. It lives
as long as Celery keeps the results it describes (DOCFLOW_RESULT_EXPIRES_SECONDS), and
a deleted document's go with its results once its last run has ended (the gateway's
sweep, docflow.gateway.recovery.sweep_deleted).
"""

from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class TaskOwner:
    tenant: str
    document_id: str


class TaskRegistry:
    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def _key(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def remember(self, task_id: str, owner: TaskOwner, pipe: redis.client.Pipeline | None = None) -> None:
        """Store the owner; with `pipe` (a transaction), only queue the writes on it for
        the caller to execute with its own (an upload's record, in one round trip)."""
        own_pipe = pipe is None
        if own_pipe:
            pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._key(task_id), mapping={"tenant": owner.tenant, "document_id": owner.document_id})
        pipe.expire(self._key(task_id), self.ttl_seconds)
        if own_pipe:
            pipe.execute()

    def forget(self, task_id: str) -> None:
        self.redis.delete(self._key(task_id))

    def forget_all(self, task_ids: list[str]) -> int:
        return int(self.redis.delete(*(self._key(task_id) for task_id in task_ids))) if task_ids else 0

    def owner(self, task_id: str) -> TaskOwner | None:
        tenant, document_id = self.redis.hmget(self._key(task_id), "tenant", "document_id")
        if not tenant or not document_id:
            return None
        return TaskOwner(tenant=tenant, document_id=document_id)
