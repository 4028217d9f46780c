"""Pinecone backend: one index, one namespace per tenant (namespaces isolate tenants).

Uses the `pinecone` package; `pinecone-client` is deprecated and its last release
raises at import. Pinecone's limits shape this module (docs/architecture.md, "Facts about the libraries"; Pinecone docs):
an upsert carries at most 1000 vectors and 2 MB; metadata is at most 40 KB per
vector; a delete carries at most 1000 ids; and serverless indexes cannot delete by
metadata filter, so a document's vectors are found by listing their id prefix (ids
from `vector_id` start with the document id) and deleted by id.
"""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from pinecone import (
    ApiError,
    Pinecone,
    PineconeConnectionError,
    PineconeError,
    PineconeTimeoutError,
)

from docflow.indexer.fusion import FUSION_CANDIDATES, reciprocal_rank_fusion
from docflow.indexer.stores import sparse
from docflow.indexer.stores.base import (
    NO_ATTRIBUTES,
    MetadataValue,
    SearchHit,
    VectorRecord,
    document_id_prefix,
    version_id_prefix,
    version_of_id,
)
from docflow.indexer.stores.filters import PINECONE_METADATA_PREFIX, pinecone_field, pinecone_filter
from docflow.shared.errors import ErrorCode, TransientError
from docflow.shared.search import SearchMode, UnsupportedSearchMode
from docflow.shared.settings import Settings

MAX_VECTORS_PER_UPSERT = 1000
# Decimal units: whichever way Pinecone counts a "MB" or "KB", these stay under it.
MAX_UPSERT_REQUEST_BYTES = 2_000_000
MAX_METADATA_BYTES = 40_000
MAX_IDS_PER_DELETE = 1000
# Ids per fetch: they travel in the URL's query string.
MAX_IDS_PER_FETCH = 100
LIST_PAGE_SIZE = 100  # the largest page `list` accepts
# Room for the request's JSON wrapper: {"vectors":[...],"namespace":"..."}
_ENVELOPE_BYTES = 64

_TRANSIENT_STATUS = frozenset({408, 429})


def json_size(value: Any) -> int:
    """Bytes of `value` in a request body: the SDK encodes bodies with orjson, so do we
    (stdlib json writes some floats shorter, e.g. `1e-05` for `0.00001`, and would underestimate)."""
    return len(orjson.dumps(value))


def metadata_size(metadata: dict[str, Any]) -> int:
    """Bytes of metadata in the roomiest usual JSON (ASCII escapes, spaced separators).

    How Pinecone measures the 40 KB is not specified; no rendering is larger than
    this one, so metadata under the limit here is under it however it is counted.
    Only texts far longer than a chunk are ever cut, so the margin costs nothing.
    """
    return len(json.dumps(metadata).encode())


def user_metadata(metadata: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
    """The upload's filterable metadata under its own names (`m:` + key, see filters.py)."""
    return {pinecone_field(key): value for key, value in metadata.items()}


def fit_metadata(record: VectorRecord) -> dict[str, Any]:
    """The record's metadata, its text cut (at a UTF-8 character boundary) to fit 40 KB."""
    metadata: dict[str, Any] = {"document_id": record.document_id, "version": record.version,
                                "chunk_index": record.chunk_index}
    attributes = record.attributes
    if attributes is not NO_ATTRIBUTES:  # the document's, for filters
        metadata.update(filename=attributes.filename, content_type=attributes.content_type,
                        created_at=attributes.created_at, **user_metadata(attributes.metadata))
    if record.page is not None:  # Pinecone metadata has no null
        metadata["page"] = record.page
    text = record.text.encode()

    def with_text(kept_bytes: int) -> dict[str, Any]:
        return {**metadata, "text": text[:kept_bytes].decode("utf-8", "ignore")}

    if metadata_size(with_text(len(text))) <= MAX_METADATA_BYTES:
        return with_text(len(text))
    # The longest prefix that fits, by bisection: escapes make the size of a cut
    # hard to predict, but it only grows with the prefix. Every byte kept costs at
    # least one byte of JSON, so no more than the limit can fit.
    fits, too_long = 0, min(len(text), MAX_METADATA_BYTES) + 1
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if metadata_size(with_text(middle)) <= MAX_METADATA_BYTES:
            fits = middle
        else:
            too_long = middle
    return with_text(fits)


def to_pinecone_vector(record: VectorRecord, with_sparse: bool = False) -> dict[str, Any]:
    vector = {"id": record.id, "values": record.vector.tolist(), "metadata": fit_metadata(record)}
    if with_sparse and (keywords := sparse.document_vector(record.text)) is not None:
        vector["sparse_values"] = keywords
    return vector


def upsert_batches(vectors: Sequence[dict[str, Any]], namespace: str, max_vectors: int,
                   max_bytes: int = MAX_UPSERT_REQUEST_BYTES) -> Iterator[list[dict[str, Any]]]:
    """Split vectors into requests of at most `max_vectors` vectors and `max_bytes` bytes."""
    max_vectors = min(max_vectors, MAX_VECTORS_PER_UPSERT)
    empty_request = _ENVELOPE_BYTES + len(namespace.encode())
    batch: list[dict[str, Any]] = []
    size = empty_request
    for vector in vectors:
        vector_size = json_size(vector) + 1  # and its comma
        if batch and (len(batch) >= max_vectors or size + vector_size > max_bytes):
            yield batch
            batch, size = [], empty_request
        batch.append(vector)
        size += vector_size
    if batch:
        yield batch


def _is_transient(exc: PineconeError) -> bool:
    if isinstance(exc, (PineconeConnectionError, PineconeTimeoutError)):
        return True
    status = getattr(exc, "status_code", None) if isinstance(exc, ApiError) else None
    return status is not None and (status in _TRANSIENT_STATUS or status >= 500)


@contextmanager
def _unreachable_is_transient(what: str) -> Iterator[None]:
    """Connection errors, timeouts, 429 and 5xx retry; other errors (auth, bad request) do not.

    The SDK already retried these a few times within the call; the task's own
    backoff handles outages longer than that.
    """
    try:
        yield
    except PineconeError as exc:
        if _is_transient(exc):
            raise TransientError(ErrorCode.VECTOR_STORE_UNAVAILABLE, f"Pinecone {what}: {exc}") from exc
        raise


class PineconeStore:
    def __init__(self, index, upsert_batch_size: int = MAX_VECTORS_PER_UPSERT, sparse: bool = False) -> None:
        self.index = index
        self.upsert_batch_size = min(upsert_batch_size, MAX_VECTORS_PER_UPSERT)
        # Keyword and hybrid search need sparse values beside the dense ones, which a
        # Pinecone index takes only with the dotproduct metric (DOCFLOW_PINECONE_SPARSE).
        self.sparse = sparse

    @classmethod
    def from_settings(cls, settings: Settings) -> "PineconeStore":
        client = Pinecone(api_key=settings.pinecone_api_key.get_secret_value())
        with _unreachable_is_transient("open index"):
            # With a host no request is made; a name costs one describe call.
            index = client.index(name=settings.pinecone_index_name, host=settings.pinecone_index_host or "")
        return cls(index, settings.upsert_batch_size, sparse=settings.pinecone_sparse)

    def upsert(self, tenant: str, records: Sequence[VectorRecord], fresh: bool = False,
               embedding_model: str | None = None, generation: int = 0) -> int:
        _only_generation_zero(generation)
        # Pinecone's upsert overwrites by id whether or not the ids exist: `fresh` changes nothing.
        # Models are not recorded per namespace here (the index's dimension is fixed at
        # creation, which refuses another width); LanceDB records and checks them.
        vectors = [to_pinecone_vector(record, with_sparse=self.sparse) for record in records]
        for batch in upsert_batches(vectors, tenant, self.upsert_batch_size):
            with _unreachable_is_transient(f"upsert into {tenant!r}"):
                self.index.upsert(vectors=batch, namespace=tenant)
        return len(vectors)

    def _ids(self, tenant: str, prefix: str) -> list[str]:
        with _unreachable_is_transient(f"list {prefix!r} in {tenant!r}"):
            return [item.id for page in self.index.list(prefix=prefix, namespace=tenant, limit=LIST_PAGE_SIZE)
                    for item in page.vectors if item.id]

    def _delete_ids(self, tenant: str, ids: list[str]) -> int:
        # All ids are listed before the first delete: deleting while paging could
        # shift the pages under the pagination token.
        for start in range(0, len(ids), MAX_IDS_PER_DELETE):
            with _unreachable_is_transient(f"delete from {tenant!r}"):
                self.index.delete(ids=ids[start:start + MAX_IDS_PER_DELETE], namespace=tenant)
        return len(ids)

    def delete_document(self, tenant: str, document_id: str, keep_version: int | None = None,
                        generation: int = 0) -> int:
        _only_generation_zero(generation)
        ids = self._ids(tenant, document_id_prefix(document_id))
        if keep_version is not None:
            ids = [id_ for id_ in ids if version_of_id(document_id, id_) < keep_version]
        return self._delete_ids(tenant, ids)

    def delete_version(self, tenant: str, document_id: str, version: int,
                       written_ids: Sequence[str] = (), generation: int = 0) -> int:
        _only_generation_zero(generation)
        # Serverless listing is eventually consistent: vectors upserted seconds ago may
        # not be listed yet, so the ids the caller just wrote are deleted as well.
        listed = self._ids(tenant, version_id_prefix(document_id, version))
        return self._delete_ids(tenant, sorted(set(listed) | set(written_ids)))

    def search(self, tenant: str, vector: Sequence[float] | None, top_k: int, *,
               mode: SearchMode = SearchMode.VECTOR, text: str = "",
               filter: dict[str, Any] | None = None, embedding_model: str | None = None,
               generation: int = 0) -> list[SearchHit]:
        _only_generation_zero(generation)
        if mode is not SearchMode.VECTOR and not self.sparse:
            raise UnsupportedSearchMode(
                f"the pinecone vector store has no keyword index, so it cannot serve {mode.value!r} "
                "search: it needs an index with the dotproduct metric and DOCFLOW_PINECONE_SPARSE=true")
        where = pinecone_filter(filter)
        if mode is SearchMode.VECTOR:
            return self._query(tenant, top_k, where, vector=_dense(vector))
        keywords = sparse.query_vector(text)
        if mode is SearchMode.KEYWORD:
            return [] if keywords is None else self._query(tenant, top_k, where, sparse_vector=keywords)
        # Hybrid: the dense and the sparse list, fused by rank (fusion.py) rather than
        # by one weighted dotproduct query, so it ranks as LanceDB's hybrid does.
        candidates = max(top_k, FUSION_CANDIDATES)
        lists = [self._query(tenant, candidates, where, vector=_dense(vector))]
        if keywords is not None:
            lists.append(self._query(tenant, candidates, where, sparse_vector=keywords))
        return reciprocal_rank_fusion(lists, top_k)

    def _query(self, tenant: str, top_k: int, where: dict[str, Any] | None, **query: Any) -> list[SearchHit]:
        with _unreachable_is_transient(f"query {tenant!r}"):
            response = self.index.query(top_k=top_k, namespace=tenant, include_metadata=True, filter=where,
                                        **query)
        hits = []
        for match in response.matches:
            metadata = match.metadata or {}
            page = metadata.get("page")
            # Pinecone stores numbers as floats: 3 comes back as 3.0.
            hits.append(SearchHit(document_id=str(metadata.get("document_id", "")),
                                  chunk_index=int(metadata.get("chunk_index", 0)),
                                  text=str(metadata.get("text", "")), score=float(match.score),
                                  page=None if page is None else int(page), id=match.id))
        return hits

    def update_metadata(self, tenant: str, document_id: str, metadata: dict[str, MetadataValue],
                        generation: int = 0) -> int:
        """Set the new metadata on each of the document's vectors, by id.

        `update(set_metadata=)` merges keys and cannot remove one, so a vector that still
        carries a key the document no longer has is re-upserted whole instead (its own
        values, fetched: nothing is embedded again).
        """
        _only_generation_zero(generation)
        wanted = user_metadata(metadata)
        ids = self._ids(tenant, document_id_prefix(document_id))
        rewrite: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_IDS_PER_FETCH):
            with _unreachable_is_transient(f"fetch from {tenant!r}"):
                fetched = self.index.fetch(ids=ids[start:start + MAX_IDS_PER_FETCH], namespace=tenant)
            for id_, stored in fetched.vectors.items():
                current = dict(stored.metadata or {})
                stale = [key for key in current if key.startswith(PINECONE_METADATA_PREFIX) and key not in wanted]
                if not stale:
                    with _unreachable_is_transient(f"update in {tenant!r}"):
                        self.index.update(id=id_, set_metadata=wanted, namespace=tenant)
                    continue
                for key in stale:
                    del current[key]
                vector: dict[str, Any] = {"id": id_, "values": list(stored.values), "metadata": {**current, **wanted}}
                if stored.sparse_values is not None and stored.sparse_values.indices:
                    vector["sparse_values"] = {"indices": list(stored.sparse_values.indices),
                                               "values": list(stored.sparse_values.values)}
                rewrite.append(vector)
        for batch in upsert_batches(rewrite, tenant, self.upsert_batch_size):
            with _unreachable_is_transient(f"upsert into {tenant!r}"):
                self.index.upsert(vectors=batch, namespace=tenant)
        return len(ids)

    def count(self, tenant: str, document_id: str, generation: int = 0) -> int:
        _only_generation_zero(generation)
        return len(self._ids(tenant, document_id_prefix(document_id)))

    def ping(self) -> None:
        with _unreachable_is_transient("describe index stats"):
            self.index.describe_index_stats()


def _only_generation_zero(generation: int) -> None:
    """A tenant's namespace is its only generation: re-embedding is LanceDB's (the gateway
    refuses it for Pinecone, whose index fixes one dimension for every namespace), so
    nothing asks for another one here (docs/architecture.md, "Re-embedding")."""
    if generation:
        raise ValueError(f"Pinecone keeps one generation per tenant, not {generation}")


def _dense(vector: Sequence[float] | None) -> list[float]:
    if vector is None:
        raise ValueError("a vector search needs the query's vector")
    return [float(x) for x in vector]
