"""Which of a tenant's documents holds a given original (by its SHA-256).

Two Redis hashes per tenant: `tenant:<t>:digests` maps a digest to the newest document
uploaded with those bytes, `tenant:<t>:digest_of` maps each document back to its
digest, so deleting a document can forget its digest without the record (which does
not carry it) having to be read first. Per tenant because tenants must learn nothing
of each other's files: the same bytes in two tenants are two unrelated documents.

The map is written in the transaction that creates the document's record
(`remember`, queued on the caller's pipeline), so a document never exists unmapped.
It is only a hint: a digest pointing at a document that no longer exists (deleted
by a path that did not forget it, a record an undone upload removed) reads as absent.
Two uploads of the same new bytes racing each other may both become documents; the
digest then names the later one. Nothing else depends on the map being exact.
"""

from enum import StrEnum

import redis

# KEYS[1] = digests hash, KEYS[2] = digest_of hash; ARGV[1] = document id. Forget the
# document's digest, and the digest's entry only if it still names this document (a
# newer upload of the same bytes with on_duplicate=new keeps its own).
_FORGET_LUA = """
local digest = redis.call('HGET', KEYS[2], ARGV[1])
if not digest then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], digest) == ARGV[1] then
  redis.call('HDEL', KEYS[1], digest)
end
return 1
"""


class OnDuplicate(StrEnum):
    """What an upload whose bytes the tenant already has asks for (`?on_duplicate=`)."""

    SKIP = "skip"  # answer 200 with the existing document; store and process nothing
    NEW = "new"  # a new document all the same (the digest then names it)
    REPROCESS = "reprocess"  # a new version of the existing document (202)


class DigestIndex:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self._forget = client.register_script(_FORGET_LUA)

    def _digests_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:digests"

    def _digest_of_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:digest_of"

    def document_with(self, tenant: str, digest: str) -> str | None:
        """The id of the newest document with these bytes, as recorded (the caller checks
        that it still exists)."""
        return self.redis.hget(self._digests_key(tenant), digest)

    def remember(self, tenant: str, digest: str, document_id: str, pipe: redis.client.Pipeline) -> None:
        """Queue the mapping on `pipe` (the record's own transaction)."""
        pipe.hset(self._digests_key(tenant), digest, document_id)
        pipe.hset(self._digest_of_key(tenant), document_id, digest)

    def forget(self, tenant: str, document_id: str) -> bool:
        """The document is gone: its digest no longer names it. False if it had none."""
        return bool(self._forget(keys=[self._digests_key(tenant), self._digest_of_key(tenant)],
                                 args=[document_id]))
