"""The REST API's request and response models (what OpenAPI at /docs shows)."""

from datetime import datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from docflow.gateway.metadata import MetadataError, validated_metadata
from docflow.shared.artifacts import PageText
from docflow.shared.messages import Chunk
from docflow.shared.search import BUILTIN_FILTER_FIELDS, SearchMode
from docflow.shared.search_filter import parse_filter
from docflow.shared.status import DocumentRecord, DocumentStatus

log = structlog.get_logger(__name__)

MAX_QUERY_CHARS = 2000
MAX_TOP_K = 100


class DocumentAccepted(BaseModel):
    """A document (or a reprocess of one) is queued; poll its status or its task. An
    upload of bytes the tenant already has answers with the existing document."""

    document_id: str
    task_id: str
    status: DocumentStatus = Field(
        default=DocumentStatus.QUEUED,
        description="queued for a new document or version; a skipped duplicate's current status (200)")
    duplicate: bool = Field(
        default=False, description="true: the tenant already had a document with these bytes, and this is it "
                                   "(on_duplicate=skip, 200) or its new version (on_duplicate=reprocess, 202)")


class DocumentErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. corrupt_file, timeout")
    message: str
    stage: str | None = Field(default=None, description="extract, embed or index")


class Document(BaseModel):
    document_id: str
    status: DocumentStatus
    progress: int = Field(ge=0, le=100)
    filename: str
    content_type: str = Field(description="Judged by content; text/uri-list for a document submitted as a URL "
                                          "until it has been fetched")
    size_bytes: int
    source_url: str | None = Field(
        default=None, description="The URL a document submitted as one is fetched from; null for an upload")
    metadata: dict[str, Any]
    metadata_error: str | None = Field(
        default=None, description="Set when the stored metadata cannot be shown (a record written before "
                                  "metadata was validated at upload): `metadata` is then empty; PATCH replaces it")
    pages: int | None
    chunks: int | None
    vectors: int | None
    stage: str | None = Field(description="The stage that ran (or runs) last")
    attempts: int = Field(description="Runs of the current stage, retries included")
    error: DocumentErrorInfo | None
    version: int = Field(description="Bumped by every reprocess")
    served_version: int | None = Field(
        default=None, description="The version search serves: the last one that completed (a cancelled or "
                                  "failed reprocess leaves the one before it in place); null if none did")
    served_vectors: int | None = Field(default=None, description="That version's vectors")
    embedding_model: str | None = Field(
        default=None, description="The model that version's vectors come from, provider:model:dimensions (e.g. "
                                  "minilm:all-MiniLM-L6-v2:384); a tenant's index holds one model")
    embedding_runtime: str | None = Field(
        default=None, description="What computed them: torch, onnx or onnx-int8 for minilm, http, numpy (runtimes of "
                                  "one model mix in an index: they agree within the quality gate)")
    task_id: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_record(cls, record: DocumentRecord) -> "Document":
        # Tenant and storage keys are internal: the caller knows its tenant and
        # reaches artifacts only through the API.
        data = record.model_dump(exclude={"tenant", "original_key"})
        data["metadata"], data["metadata_error"] = shown_metadata(record)
        return cls.model_validate(data)


def shown_metadata(record: DocumentRecord) -> tuple[dict[str, Any], str | None]:
    """The record's metadata if every reader can render it, else ({}, why). Uploads and
    PATCH validate metadata, but a record stored before they did (a lone surrogate, 256
    levels of nesting) made every listing of its tenant a 500 until it was deleted: one
    record must never break a read of others."""
    try:
        return validated_metadata(record.metadata), None
    except MetadataError as exc:
        log.warning("stored metadata cannot be shown", document_id=record.document_id, reason=str(exc))
        return {}, f"the stored metadata cannot be shown: {exc}"


class MetadataUpdate(BaseModel):
    """PATCH /v1/documents/{id}: the document's new metadata, replacing the old."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Any] = Field(description="A JSON object; its top-level scalar values and "
                                                 "lists of strings are what filters can name")


class DocumentPage(BaseModel):
    documents: list[Document]
    total: int = Field(description="Documents matching the filter, over all pages")
    limit: int
    offset: int


class ArtifactSlice(BaseModel):
    """One slice of a stored artifact of the document's current version."""

    document_id: str
    version: int = Field(description="The version these come from: the document's current one")
    total: int = Field(description="Entries in the artifact, over all slices")
    offset: int
    limit: int


class DocumentPages(ArtifactSlice):
    pages: list[PageText] = Field(description="The text of each page in order, blank ones included; "
                                              "`page` is null where the format has no fixed pages "
                                              "(plain text, DOCX)")


class DocumentChunks(ArtifactSlice):
    chunks: list[Chunk] = Field(description="The searchable chunks in order; `index` is a search "
                                            "hit's `chunk_index`")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int = Field(default=5, ge=1, le=MAX_TOP_K)
    mode: SearchMode | None = Field(
        default=None,
        description="hybrid: keyword (BM25) and vector results fused by rank; vector: nearest "
                    "chunks by meaning; keyword: chunks containing the query's words. Unset: "
                    "hybrid where the vector store can serve it, else vector (a dense-only "
                    "Pinecone index); the response's `mode` says which ran")
    filter: dict[str, Any] | None = Field(
        default=None,
        description="Pinecone's metadata filter dialect ($eq $ne $in $nin $gt $gte $lt $lte $exists "
                    "$and $or) over the upload's top-level metadata keys and the built-ins "
                    f"{', '.join(BUILTIN_FILTER_FIELDS)}; created_at takes ISO-8601 or epoch seconds",
        examples=[{"department": {"$in": ["legal", "finance"]}, "year": {"$gte": 2020}}])

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query must not be blank")
        return query

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        # Checked and normalised here, once: both backends receive the same filter.
        # A FilterError is a ValueError: FastAPI answers 422 with its reason.
        return None if raw is None else parse_filter(raw)


class SearchHit(BaseModel):
    document_id: str
    filename: str
    content_type: str
    metadata: dict[str, Any] = Field(description="The document's current metadata")
    page: int | None = None
    chunk_index: int
    text: str
    score: float = Field(description="Higher is better; comparable only within one answer "
                                     "(cosine similarity, BM25 or the fused rank score, by mode)")
    highlights: list[tuple[int, int]] = Field(
        default_factory=list,
        description="[start, end) character spans of `text` that matched the query's words "
                    "(keyword and hybrid modes)")


class SearchResponse(BaseModel):
    mode: SearchMode
    reranked: bool | None = Field(
        default=None, description="null: no reranker configured; true: the results are in the reranker's "
                                  "order and carry its scores; false: it failed or timed out, and the "
                                  "fused order was kept")
    results: list[SearchHit]


class StageState(BaseModel):
    stage: str
    task_id: str
    state: str = Field(description="Celery state (PENDING, STARTED, RETRY, SUCCESS, FAILURE, ...), or "
                                   "SUPERSEDED (a newer version replaced this run) or CANCELLED")


class TaskStatus(BaseModel):
    task_id: str
    document_id: str
    state: str = Field(description="The first unfinished stage's state; SUCCESS when all are done")
    stages: list[StageState]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="Each dependency: 'ok' or why it failed")
    detail: str | None = None
