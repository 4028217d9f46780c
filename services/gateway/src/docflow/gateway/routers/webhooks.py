"""/v1/webhooks: a tenant's webhooks (docflow.shared.webhooks). Another tenant's webhook
answers like a missing one (404).

The gateway only records them; deliveries are sent by the indexer's notify worker
(docflow.indexer.webhooks), never from a request handler. The URL is checked here with
the address rules every outbound URL follows (docflow.shared.url_safety: http(s), no
credentials, and every address its host resolves to public, unless
DOCFLOW_ALLOW_PRIVATE_URLS=true; cloud metadata addresses always refused), so a client
learns at once that a URL will never be called. The sender checks again at each try (a
name's addresses may change) and for every redirect.

The secret is shown once, in the answer to POST; the listing and GET never show it.
"""

from datetime import datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException, Response, status
from pydantic import BaseModel, Field

from docflow.gateway.dependencies import ServicesDep, Tenant
from docflow.shared.status import utcnow
from docflow.shared.url_safety import (MAX_URL_CHARS, ResolutionFailed, Resolver, UrlRefused, check_url,
                                       system_resolver)
from docflow.shared.webhooks import TooManyWebhooks, Webhook, WebhookEvent, WebhookStore

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

NOT_FOUND = {status.HTTP_404_NOT_FOUND: {"description": "No such webhook for this tenant"}}


def get_resolver() -> Resolver:
    """How a webhook URL's host is resolved for its check (tests override it: no DNS)."""
    return system_resolver


ResolverDep = Annotated[Resolver, Depends(get_resolver)]


class WebhookCreate(BaseModel):
    url: str = Field(max_length=MAX_URL_CHARS, description="http(s) URL the events are POSTed to")
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WebhookEvent),
                                       description="Which events to send")


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[WebhookEvent]
    created_at: datetime

    @classmethod
    def of(cls, hook: Webhook) -> "WebhookOut":
        return cls(id=hook.id, url=hook.url, events=hook.events, created_at=hook.created_at)


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_...: verifies each delivery's webhook-signature (Standard "
                                    "Webhooks). Shown only in this answer")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut] = Field(description="Oldest first; secrets are never shown again")


def _store(services) -> WebhookStore:
    return WebhookStore(services.redis, services.settings.redis_key_prefix)


_CREATE_RESPONSES = {
    409: {"description": "The tenant has DOCFLOW_WEBHOOK_MAX_PER_TENANT webhooks already"},
    422: {"description": "Not an http(s) URL, credentials in it, a host that resolves to a loopback, "
                         "private, link-local or metadata address (unless DOCFLOW_ALLOW_PRIVATE_URLS=true; "
                         "metadata never), or an unknown event"},
    503: {"description": "The host could not be resolved for now, or Redis is unavailable"},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated,
             responses=_CREATE_RESPONSES)
def create_webhook(body: WebhookCreate, services: ServicesDep, tenant: Tenant,
                   resolver: ResolverDep) -> WebhookCreated:
    """Register a URL for some events; the answer holds its secret, shown only here."""
    try:
        check_url(body.url, services.settings.allow_private_urls, resolver)
    except UrlRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"webhook URL refused: {exc}") from None
    except ResolutionFailed as exc:
        if exc.permanent:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"webhook URL refused: {exc}") from None
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{exc}; try again",
                            headers={"Retry-After": "5"}) from None
    try:
        hook = _store(services).create(tenant, body.url, body.events,
                                       services.settings.webhook_max_per_tenant, utcnow())
    except TooManyWebhooks as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    log.info("webhook registered", webhook_id=hook.id, events=[e.value for e in hook.events])
    return WebhookCreated(**WebhookOut.of(hook).model_dump(), secret=hook.secret)


@router.get("", response_model=WebhookList)
def list_webhooks(services: ServicesDep, tenant: Tenant) -> WebhookList:
    return WebhookList(webhooks=[WebhookOut.of(hook) for hook in _store(services).list(tenant)])


@router.get("/{webhook_id}", response_model=WebhookOut, responses=NOT_FOUND)
def get_webhook(webhook_id: str, services: ServicesDep, tenant: Tenant) -> WebhookOut:
    hook = _store(services).get(tenant, webhook_id)
    if hook is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"webhook {webhook_id} not found")
    return WebhookOut.of(hook)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_webhook(webhook_id: str, services: ServicesDep, tenant: Tenant) -> Response:
    """Stop sending to it: deliveries not yet sent are dropped."""
    if not _store(services).delete(tenant, webhook_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"webhook {webhook_id} not found")
    log.info("webhook deleted", webhook_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
