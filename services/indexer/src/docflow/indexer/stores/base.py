"""The vector store interface both backends implement, and the id layout they share.

Vector ids come from `docflow.shared.messages.vector_id` (`{document}#v{version}#{chunk}`):
deterministic, so a re-run task overwrites its own vectors instead of duplicating them,
and prefixed by the document id, so one document's vectors can be listed by prefix.

Every chunk also carries its document's attributes (`DocumentAttributes`: the built-in
filter fields and the filterable part of the upload's metadata), so a search filter
runs inside the store, before ranking, on both backends.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from docflow.shared.messages import Chunk, vector_id
from docflow.shared.search import SearchMode
from docflow.shared.status import DocumentRecord

MetadataValue = str | int | float | bool | list[str]


def is_filterable(value: Any) -> bool:
    """Top-level scalars and lists of strings are filterable; nested values are not
    indexed (the gateway answers a hit's metadata from the status record)."""
    if isinstance(value, bool | str | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def filterable_metadata(metadata: dict[str, Any]) -> dict[str, MetadataValue]:
    return {key: value for key, value in metadata.items() if isinstance(key, str) and is_filterable(value)}


@dataclass(frozen=True)
class DocumentAttributes:
    """What a filter can name about a chunk's document, stored with every chunk."""

    filename: str = ""
    content_type: str = ""
    created_at: float = 0.0  # epoch seconds, as filters carry it
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    @classmethod
    def of(cls, record: DocumentRecord) -> "DocumentAttributes":
        return cls(filename=record.filename, content_type=record.content_type,
                   created_at=record.created_at.timestamp(), metadata=filterable_metadata(record.metadata))


NO_ATTRIBUTES = DocumentAttributes()


@dataclass(frozen=True)
class VectorRecord:
    """One chunk's vector with what a search hit shows about it."""

    id: str
    document_id: str
    version: int
    chunk_index: int
    text: str
    page: int | None
    vector: np.ndarray
    attributes: DocumentAttributes = NO_ATTRIBUTES

    @classmethod
    def for_chunk(cls, document_id: str, version: int, chunk: Chunk, vector: np.ndarray,
                  attributes: DocumentAttributes = NO_ATTRIBUTES) -> "VectorRecord":
        return cls(id=vector_id(document_id, version, chunk.index), document_id=document_id,
                   version=version, chunk_index=chunk.index, text=chunk.text, page=chunk.page,
                   vector=np.asarray(vector, dtype=np.float32), attributes=attributes)


@dataclass(frozen=True)
class SearchHit:
    document_id: str
    chunk_index: int
    text: str
    score: float  # higher is better: cosine similarity, BM25 or fused (see the mode)
    page: int | None
    id: str = ""  # the vector id: what fusion matches the two lists' hits by

    def as_dict(self) -> dict:
        hit = asdict(self)
        del hit["id"]
        return hit


class VectorStore(Protocol):
    """Every method acts on one generation of the tenant's index (`generation`, 0 by
    default: docs/architecture.md, "Re-embedding"); only LanceDB keeps more than one."""

    def upsert(self, tenant: str, records: Sequence[VectorRecord], fresh: bool = False,
               embedding_model: str | None = None, generation: int = 0) -> int:
        """Write records (overwriting same ids); returns how many were written.

        `fresh`: the caller knows none of these ids exist yet (the first run of this
        document version), so a store may append instead of matching ids.
        `embedding_model`: the model the vectors come from (shared.embedding_models); a
        store that records its tenants' models raises EmbeddingModelMismatch for another.
        """

    def delete_document(self, tenant: str, document_id: str, keep_version: int | None = None,
                        generation: int = 0) -> int:
        """Delete every version of a document, or with `keep_version` the versions before it.

        Versions newer than `keep_version` are never touched: they belong to a reprocess
        that started after this run, and only that run may replace them.
        """

    def delete_version(self, tenant: str, document_id: str, version: int,
                       written_ids: Sequence[str] = (), generation: int = 0) -> int:
        """Delete exactly one version of a document (a stale run cleaning up after itself).

        `written_ids` are ids this run just wrote: a store whose listing lags its
        writes (Pinecone) deletes them too, even if it cannot list them yet.
        """

    def search(self, tenant: str, vector: Sequence[float] | None, top_k: int, *,
               mode: SearchMode = SearchMode.VECTOR, text: str = "",
               filter: dict[str, Any] | None = None, embedding_model: str | None = None,
               generation: int = 0) -> list[SearchHit]:
        """The best `top_k` chunks for the mode (`vector` for vector and hybrid, `text` for
        keyword and hybrid), among those `filter` (normalised by search_filter) admits.

        Raises UnsupportedSearchMode when this store is not set up for the mode, and
        EmbeddingModelMismatch when it records the tenant's model and the query's
        vector (`embedding_model`) is of another.
        """

    def update_metadata(self, tenant: str, document_id: str, metadata: dict[str, MetadataValue],
                        generation: int = 0) -> int:
        """Rewrite the document's filterable metadata on all its chunks; how many were rewritten."""

    def count(self, tenant: str, document_id: str, generation: int = 0) -> int:
        """How many vectors the document has, all versions together."""

    def ping(self) -> None:
        """Raise TransientError(VECTOR_STORE_UNAVAILABLE) if the store cannot be reached."""


# These mirror `vector_id`'s layout; tests pin them to it.
def document_id_prefix(document_id: str) -> str:
    """Prefix of every vector id of the document (the trailing `#` keeps `doc1` from matching `doc10`)."""
    return f"{document_id}#"


def version_id_prefix(document_id: str, version: int) -> str:
    return f"{document_id}#v{version}#"


def version_of_id(document_id: str, id_: str) -> int:
    """The version encoded in one of the document's vector ids."""
    rest = id_.removeprefix(document_id_prefix(document_id))
    return int(rest.removeprefix("v").split("#", 1)[0])
