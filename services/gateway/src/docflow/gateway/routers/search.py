"""/v1/search: semantic search over the caller's own documents.

The query is embedded by the embedder and searched by the indexer (chained Celery
tasks, the only place the gateway waits on workers); the tenant is passed by the
gateway, never taken from the request, so a caller cannot search another tenant.
"""

import structlog
from fastapi import APIRouter, HTTPException, status
from pydantic import TypeAdapter, ValidationError

from docflow.gateway.dependencies import Services, ServicesDep, Tenant
from docflow.gateway.metrics import SEARCHES
from docflow.gateway.pipeline import SearchFailed, SearchTimedOut
from docflow.gateway.rate_limit import RATE_LIMITED, SearchRateLimited
from docflow.gateway.schemas import SearchHit, SearchRequest, SearchResponse

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["search"])

_HITS = TypeAdapter(list[SearchHit])


def _existing_for_tenant(services: Services, tenant: str, hits: list[SearchHit]) -> list[SearchHit]:
    """Drop hits of documents deleted since they were indexed.

    Vector deletion runs asynchronously on the indexer, so for a moment (or, if a
    deletion failed, longer) the index may still hold a deleted document's chunks.
    """
    existing = {document_id for document_id in {hit.document_id for hit in hits}
                if services.status.get_for_tenant(document_id, tenant) is not None}
    return [hit for hit in hits if hit.document_id in existing]


@router.post(
    "/search", response_model=SearchResponse,
    responses={**RATE_LIMITED,
               502: {"description": "A search worker failed"},
               504: {"description": "No result within the search timeout"}},
    dependencies=[SearchRateLimited],
)
def search(request: SearchRequest, services: ServicesDep, tenant: Tenant) -> SearchResponse:
    # A sync endpoint: FastAPI runs it in its threadpool while it waits on workers.
    timeout = services.settings.search_timeout_seconds
    try:
        raw = services.pipeline.search(tenant, request.query, request.top_k, timeout)
    except SearchTimedOut as exc:
        SEARCHES.labels("timeout").inc()
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT,
                            f"search timed out: {exc}; are the embedder and indexer running?") from None
    except SearchFailed as exc:
        SEARCHES.labels("failed").inc()
        log.warning("search failed", error=str(exc))
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"search failed on a worker: {exc}") from None
    try:
        hits = _HITS.validate_python(raw)
    except ValidationError as exc:
        SEARCHES.labels("failed").inc()
        log.error("search worker returned an unexpected result", error=str(exc))
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            "search failed: the indexer returned results in an unexpected shape") from None
    SEARCHES.labels("ok").inc()
    return SearchResponse(results=_existing_for_tenant(services, tenant, hits)[: request.top_k])
