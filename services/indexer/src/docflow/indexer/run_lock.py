"""One run at a time per tenant, for the indexer's background work (maintenance runs,
re-embed steps): a Redis key holding the running task's id, with a TTL.

The TTL outlasts the run's time limit, so a run killed without releasing the lock holds
its tenant for no longer than that; and because the key holds the task id, the
redelivery of a run killed midway (acks_late: the same id) takes the lock over at once.
Only the holder releases it.
"""

import redis

# Take the lock if free, or if this same run (a redelivery) holds it.
_ACQUIRE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
# Compare-and-delete: only the holder releases the lock.
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def acquire(client: redis.Redis, key: str, run_id: str, seconds: int) -> bool:
    return bool(client.eval(_ACQUIRE_LUA, 1, key, run_id, seconds))


def release(client: redis.Redis, key: str, run_id: str) -> None:
    client.eval(_RELEASE_LUA, 1, key, run_id)
