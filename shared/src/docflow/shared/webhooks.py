"""Webhooks: what a tenant registered, the events they are sent, and the keys both sides use.

A tenant registers a URL and the events it wants (POST /v1/webhooks in the gateway);
the indexer's `notify` worker (docflow.indexer.webhooks) sends them. In between:

- **Registrations** are one Redis hash per tenant, `<prefix>tenant:<t>:webhooks`
  (webhook id -> JSON with the URL, events, secret and creation time), added by a
  script that also enforces DOCFLOW_WEBHOOK_MAX_PER_TENANT, so two concurrent
  registrations cannot both pass the bound. Another tenant's webhook is simply not
  under its key (404).
- **Final events**: the status store's script that makes a document `completed`,
  `failed` or `cancelled` also appends an entry to one global stream,
  `<prefix>notifications` (NOTIFICATIONS_KEY), in the same atomic step -- only when
  the document's tenant has a webhook, so tenants without any cost nothing. The
  dispatcher reads it with a consumer group (at least once: an entry is acknowledged
  after its deliveries are enqueued, and one a dead dispatcher held is claimed by
  another), and enqueues one delivery per matching webhook.
- **Batches**: a batch's document is mapped to its batch (`batch_of_key`, written by the
  gateway with each entry of the batch), so the dispatcher can tell when a batch's last
  document became final and send `batch.completed` once (the batch hash's `notified`
  field, set with HSETNX by the entry that found it finished). The gateway also appends
  an entry naming the batch once all its files are decided (`announce_batch`): a batch
  whose documents were all final by then (duplicates of finished documents, refused
  files last) has no later final event to find it finished.

Deliveries follow the Standard Webhooks spec: `webhook-id` (the same for every try of
one delivery, so receivers can drop repeats), `webhook-timestamp` (the try's time) and
`webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the
secret, which is `whsec_` + base64 of 24 random bytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel

from docflow.shared.names import KEY_PREFIX
from docflow.shared.pipeline_shape import DocumentStatus

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


class WebhookEvent(StrEnum):
    DOCUMENT_COMPLETED = "document.completed"
    DOCUMENT_FAILED = "document.failed"
    DOCUMENT_CANCELLED = "document.cancelled"
    BATCH_COMPLETED = "batch.completed"


# The document event a final status is announced as.
EVENT_OF_STATUS: dict[str, WebhookEvent] = {
    DocumentStatus.COMPLETED.value: WebhookEvent.DOCUMENT_COMPLETED,
    DocumentStatus.FAILED.value: WebhookEvent.DOCUMENT_FAILED,
    DocumentStatus.CANCELLED.value: WebhookEvent.DOCUMENT_CANCELLED,
}


class Webhook(BaseModel):
    """A registration as stored (the secret included: the sender signs with it)."""

    id: str
    tenant: str
    url: str
    events: list[WebhookEvent]
    secret: str
    created_at: datetime


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def notifications_key(prefix: str = KEY_PREFIX) -> str:
    """The global stream of documents' final events (status.py appends, the dispatcher reads)."""
    return f"{prefix}notifications"


def webhooks_key(prefix: str, tenant: str) -> str:
    return f"{prefix}tenant:{tenant}:webhooks"


def batch_key(prefix: str, tenant: str, batch_id: str) -> str:
    """A batch's record (docflow.gateway.batches writes it)."""
    return f"{prefix}tenant:{tenant}:batch:{batch_id}"


def batch_of_key(prefix: str, tenant: str, document_id: str) -> str:
    """The batch a document was accepted in (a string key, expiring with the batch)."""
    return f"{prefix}tenant:{tenant}:batch_of:{document_id}"


def delivery_id(*parts: str) -> str:
    """A delivery's `webhook-id`: derived from what it delivers (the event's stream entry,
    the webhook), so an entry handled twice (at least once) gives the same id and the
    receiver can tell the repeat."""
    return "msg_" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


# Add a webhook unless the tenant has as many as allowed. KEYS[1] = the tenant's hash;
# ARGV: id, JSON, the bound. Returns 1, or 0 at the bound.
_ADD_LUA = """
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class TooManyWebhooks(Exception):
    pass


class WebhookStore:
    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
        self.redis = client
        self.prefix = prefix
        self._add = client.register_script(_ADD_LUA)

    def key(self, tenant: str) -> str:
        return webhooks_key(self.prefix, tenant)

    def create(self, tenant: str, url: str, events: list[WebhookEvent], max_per_tenant: int,
               now: datetime) -> Webhook:
        hook = Webhook(id=uuid.uuid4().hex, tenant=tenant, url=url, events=list(dict.fromkeys(events)),
                       secret=new_secret(), created_at=now)
        if not self._add(keys=[self.key(tenant)], args=[hook.id, hook.model_dump_json(), max_per_tenant]):
            raise TooManyWebhooks(f"a tenant may register at most {max_per_tenant} webhooks "
                                  "(DOCFLOW_WEBHOOK_MAX_PER_TENANT); delete one first")
        return hook

    def list(self, tenant: str) -> list[Webhook]:
        """Oldest first."""
        hooks = [Webhook.model_validate(json.loads(raw)) for raw in self.redis.hvals(self.key(tenant))]
        return sorted(hooks, key=lambda h: (h.created_at, h.id))

    def get(self, tenant: str, webhook_id: str) -> Webhook | None:
        raw = self.redis.hget(self.key(tenant), webhook_id)
        return Webhook.model_validate(json.loads(raw)) if raw else None

    def delete(self, tenant: str, webhook_id: str) -> bool:
        return bool(self.redis.hdel(self.key(tenant), webhook_id))


def announce_batch(client: redis.Redis, prefix: str, tenant: str, batch_id: str, max_len: int) -> bool:
    """Ask the dispatcher to check a batch whose files are all decided (only for a tenant
    with a webhook); whether an entry was written."""
    if not client.exists(webhooks_key(prefix, tenant)):
        return False
    client.xadd(notifications_key(prefix), {"tenant": tenant, "batch_id": batch_id, "status": ""},
                maxlen=max_len, approximate=True)
    return True


def payload(event: WebhookEvent | str, timestamp: str, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a delivery: {type, timestamp, data} (Standard Webhooks' shape)."""
    return {"type": str(event), "timestamp": timestamp, "data": data}
