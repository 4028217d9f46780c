"""The dead-letter record: tasks that exhausted their retries, with why and where.

Kept in Redis (a hash of entries plus a list for order) so operators can list and
replay them; nothing that failed for a transient reason is dropped silently.
"""

import json
import uuid
from typing import Any

import redis
from pydantic import BaseModel

from docflow.shared.status import utcnow


class DeadLetter(BaseModel):
    id: str
    task_name: str
    task_id: str
    queue: str
    args: list[Any]
    stage: str
    error_code: str
    error_message: str
    attempts: int
    document_id: str | None = None
    tenant: str | None = None
    dead_lettered_at: str


class DeadLetterStore:
    def __init__(self, client: redis.Redis, prefix: str = "docflow:") -> None:
        self.redis = client
        self.list_key = f"{prefix}dead_letters"
        self.entries_key = f"{prefix}dead_letters:entries"

    def add(self, **fields: Any) -> DeadLetter:
        letter = DeadLetter(id=uuid.uuid4().hex, dead_lettered_at=utcnow().isoformat(), **fields)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.entries_key, letter.id, letter.model_dump_json())
        pipe.lpush(self.list_key, letter.id)
        pipe.execute()
        return letter

    def list(self, limit: int = 100) -> list[DeadLetter]:
        ids = self.redis.lrange(self.list_key, 0, limit - 1)
        raw = self.redis.hmget(self.entries_key, ids) if ids else []
        return [DeadLetter.model_validate(json.loads(r)) for r in raw if r]

    def count(self) -> int:
        return int(self.redis.llen(self.list_key))
