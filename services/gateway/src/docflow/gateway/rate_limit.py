"""Per-tenant rate limits on uploads and searches, shared by every gateway replica.

A token bucket per (tenant, action) lives in Redis and is updated by one Lua script,
so replicas draw on the same budget and two concurrent requests can never both take
the last token. The script reads Redis's own clock (`TIME`), so replicas' clocks
need not agree. A bucket holds a minute's worth of requests and refills
continuously; a request finding it empty gets 429 with `Retry-After`, the whole
seconds until a token is back. Limits are set per action
(DOCFLOW_UPLOAD_RATE_LIMIT_PER_MINUTE, DOCFLOW_SEARCH_RATE_LIMIT_PER_MINUTE,
DOCFLOW_REPROCESS_RATE_LIMIT_PER_MINUTE; 0 = off). A reprocess costs the pipeline what
an upload does, and each one used to keep a whole version's artifacts: it has a
bucket of its own. A batch (POST /v1/batches) is let in for one upload token and then
charged its other files, into debt if need be (`charge`): the bucket goes below zero
and the tenant's next uploads wait until it has refilled, so N files cost N uploads
however they are sent.

The check is one Redis call made on the event loop (redis.asyncio): a slow or absent
Redis never blocks the loop, and no request pays a thread-pool hop for it -- on the
upload path that hop cost more CPU than the Redis call itself.
"""

import math
from contextlib import nullcontext
from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio
from fastapi import Depends, HTTPException, Request, status

from docflow.gateway.auth import Tenant
from docflow.gateway.metrics import counting_rejections

# KEYS[1] = bucket hash. ARGV: capacity, tokens per second, and optionally a cost (1)
# and '1' to charge it even into debt (a batch's files, counted after it was let in:
# the bucket may go below zero, and later requests wait until it has refilled).
# Returns {allowed (0|1), seconds until one token is available (as a string: Lua
# numbers become integers)}.
_TAKE_LUA = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3]) or 1
local force = ARGV[4] == '1'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed, wait = 0, 0
if tokens >= 1 or force then
  tokens = tokens - cost
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class Action(StrEnum):
    UPLOAD = "upload"
    SEARCH = "search"
    REPROCESS = "reprocess"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int


class RateLimiter:
    def __init__(self, client: redis.asyncio.Redis, prefix: str, per_minute: dict[Action, int]) -> None:
        self.prefix = prefix
        self.per_minute = per_minute
        self._take = client.register_script(_TAKE_LUA)

    async def take(self, tenant: str, action: Action) -> Decision:
        limit = self.per_minute.get(action, 0)
        if limit <= 0:
            return Decision(True, 0)
        allowed, wait = await self._take(keys=[f"{self.prefix}ratelimit:{action.value}:{tenant}"],
                                         args=[limit, limit / 60.0])
        return Decision(bool(int(allowed)), max(1, math.ceil(float(wait))))

    async def charge(self, tenant: str, action: Action, cost: int) -> None:
        """Take `cost` more tokens, into debt if need be: the rest of a request already let
        in (a batch's other files), paid for by the tenant's next requests."""
        limit = self.per_minute.get(action, 0)
        if limit <= 0 or cost <= 0:
            return
        await self._take(keys=[f"{self.prefix}ratelimit:{action.value}:{tenant}"],
                         args=[limit, limit / 60.0, cost, "1"])


def _limited(action: Action):
    async def check(request: Request, tenant: Tenant) -> None:
        limiter: RateLimiter = request.app.state.services.rate_limiter
        # An upload refused here (429, or 503 with Redis down) never reaches the upload
        # route's own counting: count it as a rejected upload here.
        with counting_rejections() if action is Action.UPLOAD else nullcontext():
            decision = await limiter.take(tenant, action)
            if not decision.allowed:
                limit = limiter.per_minute[action]
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"too many {action.value} requests for this tenant (limit {limit} per minute); "
                    f"retry after {decision.retry_after_seconds} s",
                    headers={"Retry-After": str(decision.retry_after_seconds)},
                )

    return Depends(check)


UploadRateLimited = _limited(Action.UPLOAD)
SearchRateLimited = _limited(Action.SEARCH)
ReprocessRateLimited = _limited(Action.REPROCESS)
RATE_LIMITED = {status.HTTP_429_TOO_MANY_REQUESTS: {
    "description": "The tenant's rate limit is used up; retry after Retry-After seconds"}}
