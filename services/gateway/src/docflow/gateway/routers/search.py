"""/v1/search: hybrid, vector or keyword search over the caller's own documents.

For the modes that need a vector the query is embedded by the embedder, then searched
by the indexer (chained Celery tasks, the only place the gateway waits on workers);
keyword search goes to the indexer alone. The tenant is passed by the gateway, never
taken from the request, so a caller cannot search another tenant, and a filter is
validated here and runs inside the index, before ranking.
"""

import structlog
from fastapi import APIRouter, HTTPException, status
from pydantic import TypeAdapter, ValidationError

from docflow.gateway.dependencies import Services, ServicesDep, Tenant
from docflow.gateway.json_bodies import StrictJsonRoute
from docflow.gateway.metrics import SEARCHES
from docflow.gateway.pipeline import SearchFailed, SearchModelMismatch, SearchModeUnsupported, SearchTimedOut
from docflow.gateway.rate_limit import RATE_LIMITED, SearchRateLimited
from docflow.gateway.schemas import SearchHit, SearchRequest, SearchResponse, shown_metadata
from docflow.shared.names import Task
from docflow.shared.reembed import Reembeds
from docflow.shared.search import IndexHit, SearchMode, SearchQuery
from docflow.shared.settings import Settings

log = structlog.get_logger(__name__)
# Bodies are read bounded (413) and parsed strictly (duplicate keys and NaN refused).
router = APIRouter(prefix="/v1", tags=["search"], route_class=StrictJsonRoute)

_HITS = TypeAdapter(list[IndexHit])
# The store each backend needs for the modes beyond vector search (a 400 names it).
_KEYWORD_CAPABLE_STORES = "LanceDB, or Pinecone with DOCFLOW_PINECONE_SPARSE=true (a dotproduct index)"


def _keyword_capable(settings: Settings) -> bool:
    return settings.vector_store != "pinecone" or settings.pinecone_sparse


def resolved_mode(settings: Settings, requested: SearchMode | None) -> SearchMode:
    """The mode asked for; unset, the best the configured store serves (hybrid, or
    vector on a dense-only Pinecone index, so a client that never names a mode keeps
    working there). A mode asked for that the store cannot serve is a 400 naming it,
    never a silent fallback. Both sides share the settings, so the gateway knows
    before asking the indexer."""
    if requested is None:
        return SearchMode.HYBRID if _keyword_capable(settings) else SearchMode.VECTOR
    if requested is not SearchMode.VECTOR and not _keyword_capable(settings):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"search mode {requested.value!r} needs keyword (sparse) vectors, which the configured "
                            f"vector store, pinecone, is not set up for; use mode 'vector', or {_KEYWORD_CAPABLE_STORES}")
    return requested


def _with_documents(services: Services, tenant: str, hits: list[IndexHit]) -> list[SearchHit]:
    """Each hit with its document's file name, type and current metadata, from the
    status store; hits of documents deleted since they were indexed are dropped.

    Vector deletion runs asynchronously on the indexer, so for a moment (or, if a
    deletion failed, longer) the index may still hold a deleted document's chunks.
    """
    records = {document_id: services.status.get_for_tenant(document_id, tenant)
               for document_id in {hit.document_id for hit in hits}}
    return [SearchHit(document_id=hit.document_id, filename=record.filename, content_type=record.content_type,
                      metadata=shown_metadata(record)[0], page=hit.page, chunk_index=hit.chunk_index, text=hit.text,
                      score=hit.score, highlights=hit.highlights)
            for hit in hits if (record := records[hit.document_id]) is not None]


@router.post(
    "/search", response_model=SearchResponse,
    responses={**RATE_LIMITED,
               400: {"description": "The configured vector store cannot serve this search mode"},
               409: {"description": "The query was embedded with another model than the tenant's index holds "
                                    "(the embedder's model changed): `detail` names both; re-embed the tenant"},
               413: {"description": "Request body over 1 MiB"},
               422: {"description": "Malformed request or filter, a key given twice, NaN (the reason is in "
                                    "`detail`)"},
               502: {"description": "A search worker failed"},
               503: {"description": "Too many searches in progress on this gateway; retry after Retry-After"},
               504: {"description": "No result within the search timeout"}},
    dependencies=[SearchRateLimited],
)
def search(request: SearchRequest, services: ServicesDep, tenant: Tenant) -> SearchResponse:
    # A sync endpoint: FastAPI runs it in its threadpool while it waits on workers.
    settings = services.settings
    mode = resolved_mode(settings, request.mode)
    if not services.search_slots.acquire(blocking=False):
        SEARCHES.labels("overloaded").inc()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"too many searches in progress ({settings.search_max_concurrent} on this gateway); "
                            "retry after Retry-After", headers={"Retry-After": "1"})
    try:
        return _search(request, mode, services, tenant)
    finally:
        services.search_slots.release()


def _failure_for_caller(exc: SearchFailed) -> str:
    """What a 502 may say: the failed step (a task name, from our own registry) and the
    request id the gateway's log line carries, never the worker's own message."""
    text = str(exc)
    step = next((task.value for task in (Task.EMBED_QUERY, Task.SEARCH) if text.startswith(task.value)), None)
    where = "the query embedder" if step == Task.EMBED_QUERY.value else "the indexer"
    request_id = structlog.contextvars.get_contextvars().get("request_id", "")
    return (f"search failed on {where} ({step or 'a search worker'}); the gateway's log has the details "
            f"under request id {request_id}")


def _search(request: SearchRequest, mode: SearchMode, services: Services, tenant: str) -> SearchResponse:
    settings = services.settings
    reranker = services.reranker
    # A reranker re-scores more candidates than are asked for, then the best are kept.
    limit = max(request.top_k, reranker.candidates) if reranker else request.top_k
    # The tenant's active index generation and its model, read together: the query is
    # embedded with that model and searched in that generation, even while a re-embed
    # switches to the next (docs/architecture.md, "Re-embedding").
    active = Reembeds(services.redis, settings.redis_key_prefix).active(tenant)
    query = SearchQuery(tenant=tenant, text=request.query, mode=mode, limit=limit, filter=request.filter,
                        generation=active.generation)
    try:
        raw = services.pipeline.search(query, settings.search_timeout_seconds, model=active.model)
    except SearchModeUnsupported as exc:
        SEARCHES.labels("failed").inc()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except SearchModelMismatch as exc:
        # Our own message (both models, the caller's tenant, what to do): no server detail.
        SEARCHES.labels("failed").inc()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except SearchTimedOut as exc:
        SEARCHES.labels("timeout").inc()
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT,
                            f"search timed out: {exc}; are the embedder and indexer running?") from None
    except SearchFailed as exc:
        SEARCHES.labels("failed").inc()
        # The worker's error (a LanceDB one names server paths and Rust source files) goes
        # to the log only; the caller learns which step failed and how to find the rest.
        log.warning("search failed", error=str(exc))
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, _failure_for_caller(exc)) from None
    try:
        hits = _HITS.validate_python(raw)
    except ValidationError as exc:
        SEARCHES.labels("failed").inc()
        log.error("search worker returned an unexpected result", error=str(exc))
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            "search failed: the indexer returned results in an unexpected shape") from None
    reranked = None
    if reranker is not None:
        hits, reranked = reranker.rerank(request.query, hits)
    SEARCHES.labels("ok").inc()
    log.info("searched", mode=mode.value, filtered=request.filter is not None, hits=len(hits),
             reranked=reranked)
    return SearchResponse(mode=mode, reranked=reranked,
                          results=_with_documents(services, tenant, hits)[: request.top_k])
