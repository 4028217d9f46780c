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
(docs/architecture.md). Importing lancedb already starts its background event-loop thread;
lancedb 0.40 restarts it in forked children but calls that support experimental
and warns a deadlock remains possible, so we do not rely on it (see worker.py).
"""

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import lancedb
import numpy as np
import structlog
import pyarrow as pa
from lancedb.index import FTS, IvfPq, IvfSq

from docflow.indexer.fusion import FUSION_CANDIDATES, reciprocal_rank_fusion
from docflow.indexer.group_commit import GroupCommit
from docflow.indexer.stores.base import MetadataValue, SearchHit, VectorRecord
from docflow.indexer.stores.filters import lancedb_where, metadata_numbers, metadata_terms, sql_string
from docflow.shared.embedding_models import check_same_model
from docflow.shared.errors import ErrorCode, PermanentError, TransientError
from docflow.shared.highlights import MAX_TOKEN_CHARS, STOP_WORDS
from docflow.shared.search import SearchMode
from docflow.shared.settings import TENANT_PATTERN

log = structlog.get_logger(__name__)

# lancedb reports most failures as RuntimeError/ValueError carrying the Rust error's
# text; an unreachable or broken object store shows up as one of these markers.
_IO_ERROR_MARKERS = ("LanceError(IO)", "IO {", "IO error", "Failed to connect")
# lancedb itself recognises a missing table by these words (see LanceDBConnection.open_table).
_MISSING_TABLE_MARKERS = ("was not found", "Table not found")
# Table handles a process keeps: a handle holds its table's manifest, so a worker
# serving many tenants keeps the busiest few, not one per tenant it ever saw.
MAX_OPEN_TABLES = 64
# The native (Lance) BM25 index, tokenising exactly as docflow.shared.highlights does:
# highlights and Pinecone's sparse vectors then match what this index matches.
FTS_OPTIONS = FTS(with_position=False, base_tokenizer="simple", language="English",
                  max_token_length=MAX_TOKEN_CHARS, lower_case=True, stem=True, remove_stop_words=True,
                  custom_stop_words=sorted(STOP_WORDS), ascii_folding=True)
FTS_INDEX_NAME = "text_idx"
_HIT_COLUMNS = ["id", "document_id", "chunk_index", "text", "page"]
# The embedding model a table's vectors come from (docflow.shared.embedding_models), in
# the metadata of its `vector` field: written with the table's schema when the table is
# created, so a table never exists without it, kept by every append, merge, update and
# compaction (they keep the schema), and gone with the table. A table from before
# models were recorded has none until the first write that names a model adopts it.
MODEL_METADATA_KEY = "docflow.embedding_model"


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


def table_name(tenant: str, generation: int = 0) -> str:
    """The table of one generation of the tenant's index (docs/architecture.md,
    "Re-embedding"): generation 0 keeps the name tables had before generations existed."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(f"not a valid tenant name: {tenant!r}")
    return f"tenant_{tenant}" if not generation else f"tenant_{tenant}.g{int(generation)}"


def table_model(table) -> str | None:
    """The embedding model the table records, or None (a table from before models were)."""
    metadata = table.schema.field("vector").metadata or {}
    value = metadata.get(MODEL_METADATA_KEY.encode())
    return value.decode() if value else None


def table_schema(dimension: int, embedding_model: str | None = None) -> pa.Schema:
    return pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("document_id", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("chunk_index", pa.int64(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("page", pa.int64()),
        pa.field("vector", pa.list_(pa.float32(), dimension),
                 metadata={MODEL_METADATA_KEY: embedding_model} if embedding_model else None),
        # The document's attributes, on every chunk so filters run inside the store
        # (stores/filters.py says how metadata is laid out and queried).
        pa.field("filename", pa.string(), nullable=False),
        pa.field("content_type", pa.string(), nullable=False),
        pa.field("created_at", pa.float64(), nullable=False),
        pa.field("meta_terms", pa.list_(pa.string()), nullable=False),
        pa.field("meta_numbers", pa.json_(pa.string()), nullable=False),
    ])


def _metadata_columns(metadatas: Sequence[dict[str, MetadataValue]]) -> dict[str, pa.Array]:
    return {"meta_terms": pa.array([metadata_terms(m) for m in metadatas], pa.list_(pa.string())),
            "meta_numbers": pa.array([metadata_numbers(m) for m in metadatas], pa.json_(pa.string()))}


class LanceDBStore:
    def __init__(self, uri: str, vector_search_options: "VectorSearchOptions | None" = None) -> None:
        self.uri = uri
        self.vector_search_options = vector_search_options or VectorSearchOptions()
        with _io_errors_are_transient("connect"):
            self.db = lancedb.connect(uri, read_consistency_interval=timedelta(0))
        # table name -> (table handle, vector dimension), the most recently opened last. A
        # table's dimension is fixed when it is created, and a table is only dropped once
        # no search or write uses its generation any more (`drop`). (Its model is fixed
        # once recorded too: see `_model_of`.)
        self._tables: dict[str, tuple[object, int]] = {}
        self._models: dict[str, str] = {}  # table name -> the model it records
        self._fts_ready: set[str] = set()  # tables with their full-text index
        # Runs a hybrid search's keyword half beside its vector half (see `search`).
        self._halves = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyword-half")
        # First runs' appends from the worker's threads share commits (group_commit.py).
        self.appends = GroupCommit()
        self._creating = threading.Lock()  # a new tenant's table, created once (`_create`)

    def _open(self, tenant: str, generation: int = 0):
        """The tenant's table, or None if the tenant has never indexed anything."""
        return self._open_with_dimension(tenant, generation)[0]

    def _open_with_dimension(self, tenant: str,
                             generation: int = 0) -> tuple[object, int] | tuple[None, None]:
        name = table_name(tenant, generation)
        opened = self._tables.get(name)
        if opened is None:
            try:
                table = self.db.open_table(name)
            except Exception as exc:
                if _is_missing_table(exc):
                    return None, None  # not remembered: another process may create it
                raise
            if len(self._tables) >= MAX_OPEN_TABLES:  # the longest-kept handle (another thread may too)
                self._tables.pop(next(iter(self._tables), None), None)
            opened = self._tables[name] = (table, table.schema.field("vector").type.list_size)
        return opened

    def _model_of(self, table) -> str | None:
        """The model the table records. Remembered once known: it never changes
        afterwards. Unknown (a table from before models were recorded) is read again
        each time, as another process may adopt one."""
        model = self._models.get(table.name)
        if model is None:
            model = table_model(table)
            if model is not None:
                if len(self._models) >= MAX_OPEN_TABLES:
                    self._models.pop(next(iter(self._models), None), None)
                self._models[table.name] = model
        return model

    def embedding_model(self, tenant: str, generation: int = 0) -> str | None:
        """The model of the tenant's table; None if it has no table or records none."""
        with self._using(tenant, f"read the model of {tenant!r}", generation):
            table = self._open(tenant, generation)
            return None if table is None else self._model_of(table)

    def drop(self, tenant: str, generation: int) -> bool:
        """Drop one generation's table (a re-embed's old one, or a failed one's leftover);
        False if there was none."""
        name = table_name(tenant, generation)
        with self._using(tenant, f"drop {name!r}", generation):
            self._forget(name)
            try:
                self.db.drop_table(name)
            except Exception as exc:
                if _is_missing_table(exc):
                    return False
                raise
            return True

    def _forget(self, name: str) -> None:
        self._tables.pop(name, None)
        self._models.pop(name, None)
        self._fts_ready.discard(name)

    def _create(self, tenant: str, generation: int, dimension: int,
                embedding_model: str | None) -> tuple[object, int]:
        """Create the table, or open it if another thread or process just did (the loser
        gets the winner's table, and its model is checked by the caller). lancedb's
        `exist_ok` compares the schemas and refused ours with the model in the vector
        field's metadata, so a lost race is told by the table existing afterwards."""
        with self._creating:  # this process's threads one at a time
            table, expected = self._open_with_dimension(tenant, generation)
            if table is not None:
                return table, expected
            try:
                self.db.create_table(table_name(tenant, generation), schema=table_schema(dimension, embedding_model))
            except Exception:
                table, expected = self._open_with_dimension(tenant, generation)
                if table is None:
                    raise
                return table, expected
            return self._open_with_dimension(tenant, generation)

    def _check_model_for_write(self, tenant: str, table, embedding_model: str | None) -> None:
        """Refuse vectors of another model than the table's; a table recording none
        adopts this one (a Lance commit of the field's metadata), then is read again, so
        of two writers adopting different models at once the second is refused."""
        held = self._model_of(table)
        if held is None and embedding_model:
            table.update_field_metadata({"path": "vector", "metadata": {MODEL_METADATA_KEY: embedding_model}})
            log.info("table adopted an embedding model", tenant=tenant, model=embedding_model)
            held = self._model_of(table)
        check_same_model(held, embedding_model, tenant, "this document")

    @contextmanager
    def _using(self, tenant: str, what: str, generation: int = 0) -> Iterator[None]:
        """Store errors are transient if they are I/O; after any error the table's handle
        is forgotten, so a retry opens the table afresh instead of reusing a broken one."""
        try:
            with _io_errors_are_transient(what):
                yield
        except Exception:
            self._forget(table_name(tenant, generation))
            raise

    def upsert(self, tenant: str, records: Sequence[VectorRecord], fresh: bool = False,
               embedding_model: str | None = None, generation: int = 0) -> int:
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
            "filename": [r.attributes.filename for r in records],
            "content_type": [r.attributes.content_type for r in records],
            "created_at": [r.attributes.created_at for r in records],
            **_metadata_columns([r.attributes.metadata for r in records]),
        }, schema=schema)
        with self._using(tenant, f"upsert into {tenant!r}", generation):
            table, expected = self._open_with_dimension(tenant, generation)
            if table is None:
                table, expected = self._create(tenant, generation, dimension, embedding_model)
            self._check_model_for_write(tenant, table, embedding_model)
            _check_dimension(table, expected, dimension)
            if fresh:
                # Nothing to overwrite: an append costs a commit, a merge also a join
                # against the whole table (several times slower, and growing with it).
                # Appends the other threads make to this table meanwhile share the commit.
                self.appends.append(table_name(tenant, generation), data, table.add)
            else:
                # Keyed on the deterministic id: a re-run overwrites instead of duplicating.
                (table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
                 .execute(data))
            self._ensure_fts_index(table, required=False)
        return len(records)

    def _delete(self, tenant: str, where: str, generation: int) -> int:
        with self._using(tenant, f"delete from {tenant!r}", generation):
            table = self._open(tenant, generation)
            if table is None:
                return 0
            return table.delete(where).num_deleted_rows

    def delete_document(self, tenant: str, document_id: str, keep_version: int | None = None,
                        generation: int = 0) -> int:
        where = f"document_id = {sql_string(document_id)}"
        if keep_version is not None:
            where += f" AND version < {int(keep_version)}"
        return self._delete(tenant, where, generation)

    def delete_version(self, tenant: str, document_id: str, version: int,
                       written_ids: Sequence[str] = (), generation: int = 0) -> int:
        # LanceDB reads its own writes: the filter finds every id just written.
        return self._delete(tenant, f"document_id = {sql_string(document_id)} AND version = {int(version)}",
                            generation)

    def search(self, tenant: str, vector: Sequence[float] | None, top_k: int, *,
               mode: SearchMode = SearchMode.VECTOR, text: str = "",
               filter: dict[str, Any] | None = None, embedding_model: str | None = None,
               generation: int = 0) -> list[SearchHit]:
        """`embedding_model`: the model the query's vector comes from; one other than the
        table's raises EmbeddingModelMismatch (keyword search has no vector to check)."""
        where = lancedb_where(filter)
        with self._using(tenant, f"search in {tenant!r}", generation):
            table, expected = self._open_with_dimension(tenant, generation)
            if table is None:
                return []
            if mode is not SearchMode.KEYWORD:
                check_same_model(self._model_of(table), embedding_model, tenant, "the query")
            if mode is SearchMode.VECTOR:
                return self._vector_hits(table, expected, vector, top_k, where)
            if mode is SearchMode.KEYWORD:
                return self._keyword_hits(table, text, top_k, where)
            # Hybrid: both lists, fused by rank (fusion.py, the same for both backends).
            # The two queries run at once: LanceDB executes them in Rust without the GIL,
            # so the search costs the slower half, not the sum.
            candidates = max(top_k, FUSION_CANDIDATES)
            keyword = self._halves.submit(self._keyword_hits, table, text, candidates, where)
            vector_hits = self._vector_hits(table, expected, vector, candidates, where)
            return reciprocal_rank_fusion([vector_hits, keyword.result()], top_k)

    def _vector_hits(self, table, expected: int, vector: Sequence[float] | None, limit: int,
                     where: str | None) -> list[SearchHit]:
        if vector is None:
            raise ValueError("a vector search needs the query's vector")
        query = np.asarray(vector, dtype=np.float32)
        _check_dimension(table, expected, len(query))
        def run(exact: bool) -> list[dict]:
            builder = table.search(query, vector_column_name="vector").distance_type("cosine")
            builder = builder.bypass_vector_index() if exact else self.vector_search_options.apply(builder)
            if where:
                builder = builder.where(where, prefilter=True)
            return builder.select([*_HIT_COLUMNS, "_distance"]).limit(limit).to_list()

        rows = run(exact=False)
        if where and len(rows) < limit and has_vector_index(table):
            # The ANN index only looks in the partitions it probes: a filter admitting few
            # rows elsewhere would come back short or empty. Short means few rows pass the
            # filter (or the probe missed them), so an exact scan of those rows is cheap.
            rows = run(exact=True)
        # LanceDB's cosine distance is 1 - cosine similarity.
        return [_hit(row, 1.0 - float(row["_distance"])) for row in rows]

    def _ensure_fts_index(self, table, required: bool = True) -> None:
        """The BM25 index on `text`, created with the table's first rows.

        Creating it where one exists would rebuild it from scratch, so this checks
        first (once per handle); maintenance keeps it current (`optimize` adds new
        rows). Two processes may race to create it: the loser's conflict is harmless.
        At upsert a failure is only logged (the chunks are written; a search creates
        the index), at search it is an error.
        """
        if table.name in self._fts_ready:
            return
        if not has_fts_index(table):
            try:
                table.create_index("text", config=FTS_OPTIONS, name=FTS_INDEX_NAME, replace=False)
            except Exception as exc:
                if not has_fts_index(table):
                    if required:
                        raise
                    log.warning("full-text index not created; the next search creates it",
                                table=table.name, error=str(exc))
                    return
        self._fts_ready.add(table.name)

    def _keyword_hits(self, table, text: str, limit: int, where: str | None) -> list[SearchHit]:
        if not text.strip():
            return []
        self._ensure_fts_index(table)
        # A plain string is a match query over its terms (no query syntax is parsed);
        # rows added since the index was built are searched too, unindexed.
        builder = table.search(text, query_type="fts", fts_columns="text")
        if where:
            builder = builder.where(where, prefilter=True)
        rows = builder.select([*_HIT_COLUMNS, "_score"]).limit(limit).to_list()
        return [_hit(row, float(row["_score"])) for row in rows]

    def update_metadata(self, tenant: str, document_id: str, metadata: dict[str, MetadataValue],
                        generation: int = 0) -> int:
        columns = _metadata_columns([metadata])
        with self._using(tenant, f"update metadata in {tenant!r}", generation):
            table = self._open(tenant, generation)
            if table is None:
                return 0
            # One commit for the whole document; values go in as typed data, never as SQL.
            result = table.update(where=f"document_id = {sql_string(document_id)}",
                                  values={"meta_terms": columns["meta_terms"][0].as_py(),
                                          "meta_numbers": columns["meta_numbers"][0].as_py()})
            return result.rows_updated

    def maintain(self, tenant: str, retention_seconds: int, vector_index_min_rows: int,
                 vector_index: "VectorIndexConfig | None" = None,
                 generation: int = 0) -> dict[str, Any] | None:
        """Compact, bring every index up to date, build the vector index once the table is
        big enough, and delete versions older than the retention; then the table's health.

        Every step is one or a few atomic Lance commits: a run killed between them
        leaves a readable table (at worst files no version refers to, which a later
        cleanup removes), and the next run simply does what is left.
        """
        with self._using(tenant, f"maintain {tenant!r}", generation):
            table = self._open(tenant, generation)
            if table is None:
                return None
            self._ensure_fts_index(table)
            # Compaction, incremental index updates (new rows into the FTS and vector
            # indexes) and old-version cleanup in one call. Files of failed writes
            # newer than Lance's 7-day guard stay (delete_unverified=False): a running
            # writer's files look just like them.
            table.optimize(cleanup_older_than=timedelta(seconds=retention_seconds))
            rows = table.count_rows()
            built = False
            if rows >= vector_index_min_rows and not has_vector_index(table):
                (vector_index or VectorIndexConfig()).create(table, rows)
                built = True
            return {**self.health(tenant, table), "vector_index_built": built}

    def health(self, tenant: str, table=None, generation: int = 0) -> dict[str, int]:
        """Rows, fragments, versions and rows not yet in the vector index (all, without one)."""
        table = table if table is not None else self._open(tenant, generation)
        if table is None:
            return {"rows": 0, "fragments": 0, "versions": 0, "unindexed_rows": 0}
        stats = table.stats()  # a dict in lancedb 0.40
        rows = stats["num_rows"]
        unindexed = rows
        for index in table.list_indices():
            if index.name == VECTOR_INDEX_NAME:
                unindexed = table.index_stats(index.name).num_unindexed_rows
        return {"rows": rows, "fragments": stats["fragment_stats"]["num_fragments"],
                "versions": count_versions(table), "unindexed_rows": unindexed}

    def count(self, tenant: str, document_id: str, generation: int = 0) -> int:
        with self._using(tenant, f"count in {tenant!r}", generation):
            table = self._open(tenant, generation)
            return 0 if table is None else table.count_rows(f"document_id = {sql_string(document_id)}")

    def ping(self) -> None:
        with _io_errors_are_transient("list tables"):
            self.db.list_tables()


class VectorSearchOptions:
    """How a vector query reads the ANN index once maintenance built one (see maintenance.py)."""

    def __init__(self, nprobes: int | None = None, refine_factor: int | None = None,
                 ef: int | None = None) -> None:
        self.nprobes, self.refine_factor, self.ef = nprobes, refine_factor, ef

    def apply(self, builder):
        if self.nprobes:
            builder = builder.nprobes(self.nprobes)
        if self.refine_factor:
            builder = builder.refine_factor(self.refine_factor)
        if self.ef:
            builder = builder.ef(self.ef)
        return builder


def _hit(row: dict, score: float) -> SearchHit:
    return SearchHit(document_id=row["document_id"], chunk_index=row["chunk_index"], text=row["text"],
                     score=score, page=row["page"], id=row["id"])


VECTOR_INDEX_NAME = "vector_idx"


class VectorIndexConfig:
    """The ANN index maintenance builds: IVF_SQ (int8 scalar quantisation) by default.

    Measured on 2 cores (docs/benchmarks.md, section 10, `python -m bench.scale`): at
    100,000 384-d vectors IVF_PQ (48 sub-vectors) took 150-260 s to build and needs
    refine_factor for recall (0.71 at nprobes 20 without it, 0.97 with 10); IVF_SQ
    built in 35 s and found 0.975 of the exact top 10 without refinement, 0.98 with
    refine_factor 10 at the same latency. PQ's codebook training is what costs: at a
    million vectors it would outlast the maintenance task's time limit. SQ's codes are
    8x PQ's (384 B a vector), a price worth paying for a build that finishes.
    """

    def __init__(self, index_type: str = "IVF_SQ", sub_vector_dims: int = 8) -> None:
        self.index_type = index_type
        self.sub_vector_dims = sub_vector_dims  # IVF_PQ only

    def create(self, table, rows: int) -> None:
        dimension = table.schema.field("vector").type.list_size
        if self.index_type == "IVF_SQ":
            config = IvfSq(distance_type="cosine", num_partitions=ivf_partitions(rows))
        elif self.index_type == "IVF_PQ":
            # Sub-vectors of 8 dimensions (48 for 384-d); refine_factor at query time
            # recovers recall.
            config = IvfPq(distance_type="cosine", num_partitions=ivf_partitions(rows),
                           num_sub_vectors=max(1, dimension // self.sub_vector_dims))
        else:
            table.create_index(metric="cosine", vector_column_name="vector", index_type=self.index_type,
                               name=VECTOR_INDEX_NAME, replace=True)
            return
        table.create_index("vector", config=config, name=VECTOR_INDEX_NAME, replace=True)


def ivf_partitions(rows: int) -> int:
    """About sqrt(rows) partitions (Lance's own rule of thumb), but no more than k-means
    can train: it samples 256 vectors per partition."""
    return max(1, min(int(rows ** 0.5), rows // 256))


def count_versions(table) -> int:
    """Table versions kept on disk.

    `list_versions()` reads every version's manifest: 1.2 s for 5,000 versions on this
    machine, and a tenant written at the indexer's pace keeps ~10,000 within the default
    retention, on every maintenance run. A local table's versions are its manifest files
    (Lance's layout: `_versions/<n>.manifest`), counted in milliseconds; an object
    store's are listed as before.
    """
    uri = str(getattr(table, "_dataset_uri", "") or "")
    if uri and "://" not in uri:
        try:
            with os.scandir(os.path.join(uri, "_versions")) as entries:
                return sum(1 for entry in entries if entry.name.endswith(".manifest"))
        except OSError:
            pass
    return len(table.list_versions())


def has_vector_index(table) -> bool:
    return any(index.name == VECTOR_INDEX_NAME for index in table.list_indices())


def has_fts_index(table) -> bool:
    return any(index.name == FTS_INDEX_NAME for index in table.list_indices())


def _check_dimension(table, expected: int, dimension: int) -> None:
    if dimension != expected:
        # The embedder changed model: old and new vectors cannot share one table.
        raise PermanentError(ErrorCode.INTERNAL_ERROR,
                             f"vectors have {dimension} dimensions but table {table.name!r} holds "
                             f"{expected}; re-index the tenant into a fresh store after changing models")
