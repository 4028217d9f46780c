"""The search contract between the gateway and the indexer.

The gateway validates a request, then sends a `SearchQuery` (and, for the modes that
need one, the query's vector from the embedder) to the indexer's search task, which
answers with a list of `IndexHit`s. The gateway adds what the status store knows of each
hit's document (file name, content type, current metadata) before answering.

Filters use Pinecone's metadata filter dialect over the upload's metadata keys and the
built-in fields below; `docflow.shared.search_filter` validates and normalises them,
so both backends receive the same, already checked, filter.
"""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from docflow.shared.errors import ErrorCode, PermanentError


class SearchMode(StrEnum):
    HYBRID = "hybrid"    # vector and keyword (BM25) results fused
    VECTOR = "vector"    # nearest chunks by the embedding's cosine similarity
    KEYWORD = "keyword"  # full-text (BM25) only; the query is not embedded

    @property
    def needs_vector(self) -> bool:
        return self is not SearchMode.KEYWORD


# Document attributes a filter may name besides the upload's own metadata keys.
BUILTIN_FILTER_FIELDS = ("document_id", "filename", "content_type", "created_at")


class SearchQuery(BaseModel):
    """What the indexer's search task receives (besides the vector)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    text: str
    mode: SearchMode = SearchMode.HYBRID
    # How many hits to return (the gateway asks for more when it reranks).
    limit: int = Field(ge=1)
    # A filter already validated and normalised by search_filter.parse_filter.
    filter: dict[str, Any] | None = None
    # The generation of the tenant's index to search, read by the gateway with the model
    # it had the query embedded with (docs/architecture.md, "Re-embedding"); None: the
    # indexer reads the active one itself (a gateway from before generations).
    generation: int | None = None


class IndexHit(BaseModel):
    """One chunk found by the indexer, best first."""

    document_id: str
    chunk_index: int
    text: str
    page: int | None = None
    # Higher is better; comparable only within one answer (cosine, BM25 or fused).
    score: float
    # Matched spans of `text` for keyword and hybrid matches: [start, end) character offsets.
    highlights: list[tuple[int, int]] = Field(default_factory=list)


class UnsupportedSearchMode(PermanentError):
    """The configured vector store cannot serve the requested mode (the gateway answers 400).

    Raised by the indexer's search task; Celery carries the type back to the gateway,
    which imports this same class.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL_ERROR, message)

    def __reduce__(self):
        # Rebuilt from its message alone (PipelineError's form passes the code too).
        return (type(self), (self.message,))
