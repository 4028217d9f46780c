"""/v1/admin/reembed: re-embed a tenant's documents with the embedder's current model into
a new generation of its index while searches keep using the old one, then switch
(docs/architecture.md, "Re-embedding"). Admin keys only.

The gateway only starts the job (one Redis script: refused while one runs) and sends
its coordinator to the indexer's maintenance worker; progress is read from Redis.
"""

from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from docflow.gateway.auth import AdminKey
from docflow.gateway.dependencies import Services, ServicesDep
from docflow.gateway.json_bodies import StrictJsonRoute
from docflow.shared.names import Task
from docflow.shared.reembed import JobProgress, Reembeds, ReembedState

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/admin/reembed", tags=["admin"], dependencies=[AdminKey],
                   route_class=StrictJsonRoute)


class ReembedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=200, description="The tenant to re-embed")


class ReembedJob(BaseModel):
    tenant: str
    state: ReembedState = Field(description="running, then completed (searches use the new generation) or "
                                            "failed (the old generation stays active; POST again to retry)")
    active_generation: int = Field(description="The generation searches use now")
    active_model: str | None = Field(description="The model of the active generation, when known")
    from_generation: int
    to_generation: int
    total: int = Field(description="Documents to re-embed so far (grows while documents complete "
                                   "during the job)")
    done: int = Field(description="Documents re-embedded (or no longer needing it: deleted, reprocessed)")
    failed: int = Field(description="Documents that could not be re-embedded (the job then fails)")
    started_at: datetime
    finished_at: datetime | None
    model: str | None = Field(description="The model of the new generation, once a document was re-embedded")
    error: str | None = None


def _reembeds(services: Services) -> Reembeds:
    return Reembeds(services.redis, services.settings.redis_key_prefix)


def _known_tenant(services: Services, tenant: str) -> str:
    if tenant not in set(services.settings.tenants_by_key.values()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown tenant {tenant!r} (no API key names it)")
    return tenant


def _view(services: Services, job: JobProgress) -> ReembedJob:
    active = _reembeds(services).active(job.tenant)
    return ReembedJob(
        tenant=job.tenant, state=job.state, active_generation=active.generation, active_model=active.model,
        from_generation=job.from_generation, to_generation=job.to_generation, total=job.total, done=job.done,
        failed=job.failed, started_at=datetime.fromtimestamp(job.started_at, UTC),
        finished_at=datetime.fromtimestamp(job.finished_at, UTC) if job.finished_at else None,
        model=job.model, error=job.error)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ReembedJob, responses={
    400: {"description": "The configured vector store cannot keep two generations (Pinecone)"},
    404: {"description": "Unknown tenant"},
    409: {"description": "A re-embed of this tenant is already running"},
    422: {"description": "Malformed body"},
    503: {"description": "The job could not be sent to the indexer; nothing was started"}})
def start_reembed(request: ReembedRequest, services: ServicesDep) -> ReembedJob:
    tenant = _known_tenant(services, request.tenant)
    if services.settings.vector_store != "lancedb":
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "re-embedding builds a new LanceDB table beside the old one; with Pinecone (one "
                            "index, one dimension) create a new index and ingest the documents again")
    jobs = _reembeds(services)
    target = jobs.start(tenant, services.status.documents_key(tenant))
    if target is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a re-embed of tenant {tenant!r} is already running; "
                                                      f"follow it at GET /v1/admin/reembed/{tenant}")
    try:
        services.pipeline.send(Task.REEMBED_TENANT.value, [tenant])
    except Exception as exc:
        jobs.fail(tenant, f"the coordinator could not be sent: {exc}")
        log.warning("re-embed not started", tenant=tenant, error=str(exc))
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the re-embed could not be queued; retry") from None
    log.info("re-embed started", tenant=tenant, generation=target)
    return _view(services, jobs.job(tenant))


@router.get("/{tenant}", response_model=ReembedJob, responses={
    404: {"description": "Unknown tenant, or it was never re-embedded"}})
def reembed_progress(tenant: str, services: ServicesDep) -> ReembedJob:
    job = _reembeds(services).job(_known_tenant(services, tenant))
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant!r} was never re-embedded")
    return _view(services, job)
