"""The dead-letter record: tasks that exhausted their retries, with why and where.

Kept in Redis (a hash of entries plus a list for order) so operators can list and
replay them; nothing that failed for a transient reason is dropped silently. Three
kinds of message end here: a task whose retries ran out, a task redelivered more
than DOCFLOW_MAX_DELIVERIES times (a poison message), and a message no worker could
decode, which is kept (a bounded excerpt) for inspection but cannot be replayed.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from pydantic import BaseModel

from docflow.shared.names import KEY_PREFIX
from docflow.shared.status import utcnow

# An undecodable message's body is kept for diagnosis, never whole: it may be huge.
MAX_BODY_EXCERPT_CHARS = 2048


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
    # False for a message that could not be decoded: there is nothing to re-send.
    replayable: bool = True
    content_type: str | None = None
    body_excerpt: str | None = None


class DeadLetterStore:
    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
        self.redis = client
        self.list_key = f"{prefix}dead_letters"
        self.entries_key = f"{prefix}dead_letters:entries"

    def add(self, **fields: Any) -> DeadLetter:
        letter = DeadLetter(id=uuid.uuid4().hex, dead_lettered_at=utcnow().isoformat(), **fields)
        return self.put_back(letter)

    def put_back(self, letter: DeadLetter) -> DeadLetter:
        """Store a letter (again, after a replay that could not be carried out)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.entries_key, letter.id, letter.model_dump_json())
        pipe.lpush(self.list_key, letter.id)
        pipe.execute()
        return letter

    def list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """Newest first."""
        ids = self.redis.lrange(self.list_key, offset, offset + limit - 1)
        raw = self.redis.hmget(self.entries_key, ids) if ids else []
        return [DeadLetter.model_validate(json.loads(r)) for r in raw if r]

    def get(self, letter_id: str) -> DeadLetter | None:
        raw = self.redis.hget(self.entries_key, letter_id)
        return DeadLetter.model_validate(json.loads(raw)) if raw else None

    def remove(self, letter_id: str) -> bool:
        """Forget one letter (replayed or discarded); False if it was already gone."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.entries_key, letter_id)
        pipe.lrem(self.list_key, 0, letter_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def count(self) -> int:
        return int(self.redis.llen(self.list_key))

    def trim(self, max_age_seconds: int, max_count: int, now: datetime | None = None) -> int:
        """Forget letters beyond the newest `max_count` and, from the oldest end, those
        dead-lettered more than `max_age_seconds` ago (0 turns either bound off).
        Returns how many went. Letters are never kept for good: they held 4.5 KB per
        failure, for ever, deleted documents' too."""
        removed = 0
        if max_count and self.count() > max_count:
            pipe = self.redis.pipeline(transaction=True)
            pipe.lrange(self.list_key, max_count, -1)
            pipe.ltrim(self.list_key, 0, max_count - 1)
            beyond, _ = pipe.execute()
            if beyond:
                self.redis.hdel(self.entries_key, *beyond)
            removed += len(beyond)
        if max_age_seconds:
            cutoff = (now or utcnow()) - timedelta(seconds=max_age_seconds)
            while oldest := self.redis.lrange(self.list_key, -_TRIM_PAGE, -1):
                letters = dict(zip(oldest, self.redis.hmget(self.entries_key, oldest)))
                expired = [letter_id for letter_id, raw in letters.items()
                           if raw is None or _dead_lettered_at(raw) < cutoff]
                if not expired:
                    break
                removed += self._forget(expired)
                if len(expired) < len(oldest):
                    break
        return removed

    def remove_for_documents(self, document_ids: set[str]) -> int:
        """Forget every letter of these (deleted) documents."""
        if not document_ids:
            return 0
        theirs = [letter_id for letter_id, raw in self.redis.hscan_iter(self.entries_key, count=500)
                  if json.loads(raw).get("document_id") in document_ids]
        return self._forget(theirs)

    def _forget(self, letter_ids: "list[str]") -> int:  # (`list` is a method here)
        if not letter_ids:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.entries_key, *letter_ids)
        for letter_id in letter_ids:
            pipe.lrem(self.list_key, 0, letter_id)
        pipe.execute()
        return len(letter_ids)


# Letters read per step while trimming by age from the oldest end.
_TRIM_PAGE = 100


def _dead_lettered_at(raw: str | bytes) -> datetime:
    try:
        return datetime.fromisoformat(json.loads(raw)["dead_lettered_at"])
    except (KeyError, TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)  # unreadable: nothing worth keeping
