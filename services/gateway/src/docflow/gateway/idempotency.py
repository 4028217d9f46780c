"""Idempotency keys (the IETF httpapi `Idempotency-Key` draft): claim a key, run the
request once, store its answer, replay it to every repeat.

One Redis hash per (tenant, key), so a key holds across gateway replicas and, with
AOF, across a Redis restart; tenants never see each other's keys. Its life:

- **claim**: absent -> `pending`, held by this request (a random token) until
  `lease_until`; the hash itself expires DOCFLOW_IDEMPOTENCY_TTL_SECONDS after the
  first claim. A repeat while the lease runs is a 409 (in progress); a repeat whose
  fingerprint (what was asked) differs is a 422, whatever the state.
- **complete**: the holder stores its 2xx answer (`done`); repeats get it as it was.
- **release**: the holder failed (any 4xx/5xx, e.g. a 503 with the queue down): the
  key is deleted, so the client's retry runs afresh.

The lease is why a dead gateway cannot lock a key for a day: it is a time in the
hash (Redis's clock, so replicas need not agree, and it survives a restart), not a
lock someone must remove. Once it has passed, the next repeat takes the key over and
learns the document the dead holder was creating, if it got that far (`attach`):
the upload answers with that document instead of making a second one
(docflow.gateway.intake). A holder slower than the lease may be overtaken the same
way; its late `complete` then finds another token and stores nothing.
"""

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
import structlog
from fastapi import HTTPException, status
from fastapi.responses import JSONResponse

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
# Replays say so (as Stripe's API does): a client can tell a stored answer from a fresh one.
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255

# KEYS[1] = the key's hash. ARGV: fingerprint, token, lease ms, ttl s.
# Returns {outcome, ...}: {"acquired", document id of an overtaken holder or ""},
# {"mismatch"}, {"in_progress", ms left}, {"done", status code, body}.
_CLAIM_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'state', 'fingerprint', 'lease_until', 'document_id',
                        'status_code', 'body')
if not held[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fingerprint', ARGV[1], 'token', ARGV[2],
             'lease_until', now + tonumber(ARGV[3]))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return {'acquired', ''}
end
if held[2] ~= ARGV[1] then return {'mismatch'} end
if held[1] == 'done' then return {'done', held[5], held[6]} end
local left = tonumber(held[3]) - now
if left > 0 then return {'in_progress', tostring(left)} end
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease_until', now + tonumber(ARGV[3]))
return {'acquired', held[4] or ''}
"""
# KEYS[1]; ARGV[1] = token, then field/value pairs. Writes them only while the token holds.
_IF_HELD_LUA = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
# KEYS[1]; ARGV[1] = token, ARGV[2] = status code, ARGV[3] = body.
_COMPLETE_LUA = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status_code', ARGV[2], 'body', ARGV[3])
redis.call('HDEL', KEYS[1], 'token', 'lease_until')
return 1
"""
# KEYS[1]; ARGV[1] = token, ARGV[2] = lease ms. Extends the lease while the token holds
# (a batch of many files takes longer than one upload: it renews as it goes).
_RENEW_LUA = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('HSET', KEYS[1], 'lease_until', now + tonumber(ARGV[2]))
return 1
"""
# KEYS[1]; ARGV[1] = token.
_RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class Outcome(StrEnum):
    ACQUIRED = "acquired"
    MISMATCH = "mismatch"
    IN_PROGRESS = "in_progress"
    DONE = "done"


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    redis_key: str = ""
    token: str = ""
    # ACQUIRED by overtaking a holder whose lease ran out: the document it had begun.
    overtaken_document_id: str | None = None
    retry_after_ms: int = 0  # IN_PROGRESS
    status_code: int = 0  # DONE
    body: str = ""  # DONE


def parse_key(raw: str | None) -> str | None:
    """The header's key, or None without one. The draft makes it a Structured Field
    string ("..."); a bare token is accepted too, as most clients send one. 400 for
    anything else: empty, over MAX_KEY_CHARS, or not printable ASCII."""
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not key or len(key) > MAX_KEY_CHARS or not all(" " <= char <= "~" for char in key):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters")
    return key


def fingerprint(*parts: Any) -> str:
    """What a request asked for, as one digest: a key reused for anything else is a 422.
    Dicts are hashed with sorted keys: the same metadata in another order is the same
    request. ASCII escapes: any string encodes, even one with a lone surrogate."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int, lease_seconds: int) -> None:
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.lease_seconds = lease_seconds
        self._claim = client.register_script(_CLAIM_LUA)
        self._if_held = client.register_script(_IF_HELD_LUA)
        self._complete = client.register_script(_COMPLETE_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._renew = client.register_script(_RENEW_LUA)

    def redis_key(self, tenant: str, key: str) -> str:
        return f"{self.prefix}idempotency:{tenant}:{key}"

    def claim(self, tenant: str, key: str, request_fingerprint: str) -> Claim:
        redis_key = self.redis_key(tenant, key)
        token = secrets.token_hex(16)
        reply = self._claim(keys=[redis_key], args=[request_fingerprint, token, self.lease_seconds * 1000,
                                                    self.ttl_seconds])
        outcome = Outcome(reply[0])
        if outcome is Outcome.ACQUIRED:
            return Claim(outcome, redis_key, token, overtaken_document_id=reply[1] or None)
        if outcome is Outcome.IN_PROGRESS:
            return Claim(outcome, redis_key, retry_after_ms=int(float(reply[1])))
        if outcome is Outcome.DONE:
            return Claim(outcome, redis_key, status_code=int(reply[1]), body=reply[2])
        return Claim(outcome, redis_key)

    def attach(self, claim: Claim, document_id: str) -> None:
        """Note the document this request is about to create, for a retry that may
        overtake it should this gateway die before it answers."""
        self._if_held(keys=[claim.redis_key], args=[claim.token, "document_id", document_id])

    def complete(self, claim: Claim, status_code: int, body: str) -> bool:
        return bool(self._complete(keys=[claim.redis_key], args=[claim.token, status_code, body]))

    def renew(self, claim: Claim) -> bool:
        """Hold the key for another lease from now; False if another request overtook it."""
        return bool(self._renew(keys=[claim.redis_key], args=[claim.token, self.lease_seconds * 1000]))

    def release(self, claim: Claim) -> None:
        self._release(keys=[claim.redis_key], args=[claim.token])


def answer_once(store: IdempotencyStore, tenant: str, key: str, request_fingerprint: str,
                handle: Callable[[Claim], tuple[int, dict[str, Any]]]) -> JSONResponse:
    """Run `handle` (returning status code and JSON body) at most once per key, or
    answer as the key's state says: the stored answer, 409 or 422."""
    claim = store.claim(tenant, key, request_fingerprint)
    if claim.outcome is Outcome.DONE:
        return JSONResponse(json.loads(claim.body), status_code=claim.status_code,
                            headers={REPLAYED_HEADER: "true"})
    if claim.outcome is Outcome.MISMATCH:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"this {HEADER} was used for a different request (another file, file name, "
                            "metadata or on_duplicate); use a new key for a new request")
    if claim.outcome is Outcome.IN_PROGRESS:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"a request with this {HEADER} is still being processed; retry later",
                            headers={"Retry-After": str(max(1, -(-claim.retry_after_ms // 1000)))})
    try:
        status_code, body = handle(claim)
    except BaseException:
        _release_quietly(store, claim)
        raise
    text = json.dumps(body)
    try:
        if not store.complete(claim, status_code, text):
            log.warning("idempotency key overtaken before its answer was stored", idempotency_key=key)
    except redis.exceptions.RedisError as exc:
        # The document exists: answer it. A repeat after the lease overtakes the key and
        # finds the attached document (intake), so it still gets this document.
        log.warning("could not store an idempotent answer", idempotency_key=key, error=str(exc))
    return JSONResponse(body, status_code=status_code)


def _release_quietly(store: IdempotencyStore, claim: Claim) -> None:
    """Best effort: the failure that got us here may stop this too; the lease then frees
    the key."""
    try:
        store.release(claim)
    except redis.exceptions.RedisError as exc:
        log.warning("could not release an idempotency key; it frees itself when its lease ends",
                    error=str(exc))
