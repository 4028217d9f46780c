"""LanceDB backend: one table per tenant in a local folder or an s3:// URI.

A table per tenant isolates tenants the way Pinecone namespaces do: a search only
ever opens the asking tenant's table. A process keeps each tenant's table handle:
opening one reads its manifest and schema, which takes about as long as appending
a small document. A handle does not see other processes' writes by default, and the
indexer and search tasks run in different worker processes, so the connection is
opened with `read_consistency_interval=0` (strong consistency): before every
operation a handle checks for a newer version and loads it, so every read, merge and
delete sees what any process committed before it started, as a freshly opened handle
would.

Import and connect only in each worker process after fork, never in the prefork
parent: a LanceDB connection opened in the parent hung its children forever
(DESIGN.md). Importing lancedb already starts its background event-loop thread;
lancedb 0.40 restarts it in forked children but calls that support experimental
and warns a deadlock remains possible, so we do not rely on it (see worker.py).
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

import lancedb
import numpy as np
import pyarrow as pa

from docflow.indexer.stores.base import SearchHit, VectorRecord
from docflow.shared.errors import ErrorCode, PermanentError, TransientError
from docflow.shared.settings import TENANT_PATTERN

# lancedb reports most failures as RuntimeError/ValueError carrying the Rust error's
# text; an unreachable or broken object store shows up as one of these markers.
_IO_ERROR_MARKERS = ("LanceError(IO)", "IO {", "IO error", "Failed to connect")
# lancedb itself recognises a missing table by these words (see LanceDBConnection.open_table).
_MISSING_TABLE_MARKERS = ("was not found", "Table not found")
# Table handles a process keeps: a handle holds its table's manifest, so a worker
# serving many tenants keeps the busiest few, not one per tenant it ever saw.
MAX_OPEN_TABLES = 64


def _is_missing_table(exc: Exception) -> bool:
    return isinstance(exc, (ValueError, RuntimeError)) and any(m in str(exc) for m in _MISSING_TABLE_MARKERS)


def _is_io_error(exc: Exception) -> bool:
    return isinstance(exc, OSError) or (
        isinstance(exc, (ValueError, RuntimeError)) and any(m in str(exc) for m in _IO_ERROR_MARKERS)
    )


@contextmanager
def _io_errors_are_transient(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if _is_io_error(exc):
            raise TransientError(ErrorCode.VECTOR_STORE_UNAVAILABLE, f"LanceDB {what}: {exc}") from exc
        raise


def sql_string(value: str) -> str:
    """A SQL string literal: single quotes doubled, so a value can never end the literal."""
    return "'" + value.replace("'", "''") + "'"


def table_name(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(f"not a valid tenant name: {tenant!r}")
    return f"tenant_{tenant}"


def table_schema(dimension: int) -> pa.Schema:
    return pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("document_id", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("chunk_index", pa.int64(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("page", pa.int64()),
        pa.field("vector", pa.list_(pa.float32(), dimension)),
    ])


class LanceDBStore:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        with _io_errors_are_transient("connect"):
            self.db = lancedb.connect(uri, read_consistency_interval=timedelta(0))
        # tenant -> (table handle, vector dimension), the most recently opened last. A
        # table's dimension is fixed when it is created, and tables are never dropped,
        # only rows deleted.
        self._tables: dict[str, tuple[object, int]] = {}

    def _open(self, tenant: str):
        """The tenant's table, or None if the tenant has never indexed anything."""
        return self._open_with_dimension(tenant)[0]

    def _open_with_dimension(self, tenant: str) -> tuple[object, int] | tuple[None, None]:
        opened = self._tables.get(tenant)
        if opened is None:
            try:
                table = self.db.open_table(table_name(tenant))
            except Exception as exc:
                if _is_missing_table(exc):
                    return None, None  # not remembered: another process may create it
                raise
            if len(self._tables) >= MAX_OPEN_TABLES:
                del self._tables[next(iter(self._tables))]  # the longest-kept handle
            opened = self._tables[tenant] = (table, table.schema.field("vector").type.list_size)
        return opened

    @contextmanager
    def _using(self, tenant: str, what: str) -> Iterator[None]:
        """Store errors are transient if they are I/O; after any error the tenant's handle
        is forgotten, so a retry opens the table afresh instead of reusing a broken one."""
        try:
            with _io_errors_are_transient(what):
                yield
        except Exception:
            self._tables.pop(tenant, None)
            raise

    def upsert(self, tenant: str, records: Sequence[VectorRecord], fresh: bool = False) -> int:
        if not records:
            return 0
        dimension = len(records[0].vector)
        schema = table_schema(dimension)
        data = pa.Table.from_pydict({
            "id": [r.id for r in records],
            "document_id": [r.document_id for r in records],
            "version": [r.version for r in records],
            "chunk_index": [r.chunk_index for r in records],
            "text": [r.text for r in records],
            "page": [r.page for r in records],
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.stack([r.vector for r in records]).astype(np.float32).ravel()), dimension),
        }, schema=schema)
        with self._using(tenant, f"upsert into {tenant!r}"):
            table, expected = self._open_with_dimension(tenant)
            if table is None:
                # exist_ok: two workers may index a new tenant's first documents at once.
                self.db.create_table(table_name(tenant), schema=schema, exist_ok=True)
                table, expected = self._open_with_dimension(tenant)
            _check_dimension(table, expected, dimension)
            if fresh:
                # Nothing to overwrite: an append costs a commit, a merge also a join
                # against the whole table (several times slower, and growing with it).
                table.add(data)
            else:
                # Keyed on the deterministic id: a re-run overwrites instead of duplicating.
                (table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
                 .execute(data))
        return len(records)

    def _delete(self, tenant: str, where: str) -> int:
        with self._using(tenant, f"delete from {tenant!r}"):
            table = self._open(tenant)
            if table is None:
                return 0
            return table.delete(where).num_deleted_rows

    def delete_document(self, tenant: str, document_id: str, keep_version: int | None = None) -> int:
        where = f"document_id = {sql_string(document_id)}"
        if keep_version is not None:
            where += f" AND version < {int(keep_version)}"
        return self._delete(tenant, where)

    def delete_version(self, tenant: str, document_id: str, version: int,
                       written_ids: Sequence[str] = ()) -> int:
        # LanceDB reads its own writes: the filter finds every id just written.
        return self._delete(tenant, f"document_id = {sql_string(document_id)} AND version = {int(version)}")

    def search(self, tenant: str, vector: Sequence[float], top_k: int) -> list[SearchHit]:
        with self._using(tenant, f"search in {tenant!r}"):
            table, expected = self._open_with_dimension(tenant)
            if table is None:
                return []
            query = np.asarray(vector, dtype=np.float32)
            _check_dimension(table, expected, len(query))
            rows = (table.search(query, vector_column_name="vector").distance_type("cosine")
                    .select(["document_id", "chunk_index", "text", "page", "_distance"])
                    .limit(top_k).to_list())
        # LanceDB's cosine distance is 1 - cosine similarity.
        return [SearchHit(document_id=row["document_id"], chunk_index=row["chunk_index"], text=row["text"],
                          score=1.0 - float(row["_distance"]), page=row["page"]) for row in rows]

    def count(self, tenant: str, document_id: str) -> int:
        with self._using(tenant, f"count in {tenant!r}"):
            table = self._open(tenant)
            return 0 if table is None else table.count_rows(f"document_id = {sql_string(document_id)}")

    def ping(self) -> None:
        with _io_errors_are_transient("list tables"):
            self.db.list_tables()


def _check_dimension(table, expected: int, dimension: int) -> None:
    if dimension != expected:
        # The embedder changed model: old and new vectors cannot share one table.
        raise PermanentError(ErrorCode.INTERNAL_ERROR,
                             f"vectors have {dimension} dimensions but table {table.name!r} holds "
                             f"{expected}; re-index the tenant into a fresh store after changing models")
