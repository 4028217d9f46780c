"""The vector store interface both backends implement, and the id layout they share.

Vector ids come from `docflow.shared.messages.vector_id` (`{document}#v{version}#{chunk}`):
deterministic, so a re-run task overwrites its own vectors instead of duplicating them,
and prefixed by the document id, so one document's vectors can be listed by prefix.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from docflow.shared.messages import Chunk, vector_id


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

    @classmethod
    def for_chunk(cls, document_id: str, version: int, chunk: Chunk, vector: np.ndarray) -> "VectorRecord":
        return cls(id=vector_id(document_id, version, chunk.index), document_id=document_id,
                   version=version, chunk_index=chunk.index, text=chunk.text, page=chunk.page,
                   vector=np.asarray(vector, dtype=np.float32))


@dataclass(frozen=True)
class SearchHit:
    document_id: str
    chunk_index: int
    text: str
    score: float  # cosine similarity: higher is better
    page: int | None

    def as_dict(self) -> dict:
        return asdict(self)


class VectorStore(Protocol):
    def upsert(self, tenant: str, records: Sequence[VectorRecord], fresh: bool = False) -> int:
        """Write records (overwriting same ids); returns how many were written.

        `fresh`: the caller knows none of these ids exist yet (the first run of this
        document version), so a store may append instead of matching ids.
        """

    def delete_document(self, tenant: str, document_id: str, keep_version: int | None = None) -> int:
        """Delete every version of a document, or with `keep_version` the versions before it.

        Versions newer than `keep_version` are never touched: they belong to a reprocess
        that started after this run, and only that run may replace them.
        """

    def delete_version(self, tenant: str, document_id: str, version: int,
                       written_ids: Sequence[str] = ()) -> int:
        """Delete exactly one version of a document (a stale run cleaning up after itself).

        `written_ids` are ids this run just wrote: a store whose listing lags its
        writes (Pinecone) deletes them too, even if it cannot list them yet.
        """

    def search(self, tenant: str, vector: Sequence[float], top_k: int) -> list[SearchHit]: ...

    def count(self, tenant: str, document_id: str) -> int:
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
