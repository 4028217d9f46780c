"""All configuration, read once from `DOCFLOW_*` environment variables.

One class for every service keeps each variable documented in one place; a service
reads only the fields it needs. See the README's configuration table.
"""

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from docflow.shared.names import KEY_PREFIX, Stage

# Redis's AOF fsync policy, for the redis-server `make run` starts (the chart's is
# `redis.appendfsync`): what an accepted document (a 202) survives, docs/reliability.md.
RedisAppendFsync = Literal["everysec", "always"]
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_api_keys(raw: str) -> dict[str, str]:
    """Parse `key=tenant,key2=tenant2` into {key: tenant}; reject malformed pairs and
    keys given twice. Errors name a pair by its position, never by any of its key's
    characters: a settings error lands in logs and CI output."""
    keys: dict[str, str] = {}
    for position, pair in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        key, sep, tenant = pair.partition("=")
        key, tenant = key.strip(), tenant.strip()
        if not sep or not key or not TENANT_PATTERN.match(tenant):
            raise ValueError(
                "DOCFLOW_API_KEYS must be comma-separated key=tenant pairs; tenants are "
                f"lowercase letters, digits, '-' or '_' (pair {position} is not)"
            )
        if key in keys:
            # The last one would silently win: one tenant's key would open another's data.
            raise ValueError(f"DOCFLOW_API_KEYS gives one key twice (pairs {_position_of(raw, key)} and "
                             f"{position}); every key must belong to exactly one tenant")
        keys[key] = tenant
    return keys


def _position_of(raw: str, key: str) -> int:
    pairs = [part.strip() for part in raw.split(",") if part.strip()]
    return next(i for i, pair in enumerate(pairs, start=1) if pair.partition("=")[0].strip() == key)


class Settings(BaseSettings):
    # hide_input_in_errors: pydantic prints a refused field's raw value in its error, and
    # that value is DOCFLOW_API_KEYS itself (every key in a crash log) or another secret.
    model_config = SettingsConfigDict(env_prefix="DOCFLOW_", extra="ignore", hide_input_in_errors=True)

    # --- Redis: broker, result backend and status store -------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = KEY_PREFIX
    # Credentials travel in the URL: redis://:password@host/0, or
    # redis://user:password@host/0 for an ACL user. A `rediss://` URL speaks TLS and
    # verifies the server against this CA bundle (the system's when unset); a client
    # certificate and key are sent when the server asks for one (`tls-auth-clients`).
    redis_tls_ca_file: Path | None = None
    redis_tls_cert_file: Path | None = None
    redis_tls_key_file: Path | None = None
    redis_tls_verify: Literal["required", "optional", "none"] = "required"
    # Only for the redis-server the local stack starts (make run): `everysec` may lose
    # the last second of accepted documents on a power loss, `always` none (Redis
    # fsyncs before it answers), at the cost per upload bench/durability.py measures.
    redis_appendfsync: RedisAppendFsync = "everysec"

    # --- Gateway ----------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    api_keys: SecretStr = SecretStr("")
    # Operators' keys (comma-separated) for /v1/admin routes; they belong to no tenant.
    admin_api_keys: SecretStr = SecretStr("")
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    search_timeout_seconds: float = Field(default=30.0, gt=0)
    # Threads for the gateway's blocking handlers (anyio's default is 40), and the
    # Redis connections each client keeps are sized to it: a pool smaller than the
    # threads answered 503 "Too many connections" under load with Redis healthy.
    gateway_threads: int = Field(default=64, ge=4)
    # Searches waiting on workers at once, per gateway process; beyond it a search gets
    # 503 + Retry-After at once, and the other threads stay free for uploads and reads.
    search_max_concurrent: int = Field(default=32, ge=1)
    # Optional reranking of search results by a cross-encoder service: any `/rerank`
    # endpoint of the TEI, Cohere or Jina kind (gateway/reranker.py). The top
    # `reranker_candidates` hits are re-scored; past the timeout (or on any error) the
    # fused order is kept and the response says so (`reranked: false`).
    reranker: Literal["none", "http"] = "none"
    reranker_url: str = ""  # e.g. http://tei-reranker:8080/rerank
    reranker_model: str = ""  # sent as `model` (Cohere, Jina); TEI ignores it
    reranker_api_key: SecretStr = SecretStr("")  # sent as a Bearer token when set
    reranker_timeout_seconds: float = Field(default=2.0, gt=0)
    reranker_candidates: int = Field(default=50, ge=1, le=1000)
    list_page_size_max: int = Field(default=100, gt=0)
    # Per-tenant token buckets kept in Redis, so every gateway replica draws on the
    # same budget: a bucket holds a minute's worth and refills continuously. Beyond
    # it a request gets 429 with Retry-After. 0 turns a limit off.
    upload_rate_limit_per_minute: int = Field(default=600, ge=0)
    search_rate_limit_per_minute: int = Field(default=600, ge=0)
    # A reprocess runs the whole pipeline again, like an upload: its own bucket, so a
    # loop of reprocess calls cannot flood the queues (700 in 2.4 s were all accepted).
    reprocess_rate_limit_per_minute: int = Field(default=60, ge=0)
    # The gateway restarts documents whose queue message was lost (a Redis crash at
    # the wrong moment, see docflow.gateway.recovery): it looks every interval (0 =
    # never) at documents in flight unchanged for at least the idle time.
    recovery_interval_seconds: int = Field(default=60, ge=0)
    recovery_min_idle_seconds: int = Field(default=120, gt=0)
    # Document events (docflow.shared.events): each tenant's Redis Stream keeps about
    # this many (trimmed approximately, so a little more); a client resuming from an id
    # older than that gets a `reset` event. Server-Sent Event streams open at once per
    # gateway process (each holds one Redis connection of its own pool while it waits;
    # beyond it a request gets 503 + Retry-After), and the seconds between heartbeats
    # (`: ping` comments) on an idle stream, which is also how long a read waits on Redis.
    events_stream_max_len: int = Field(default=10_000, ge=100)
    events_max_streams: int = Field(default=100, ge=1)
    events_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Idempotency-Key on POST /v1/documents (docflow.gateway.idempotency): a key's first
    # successful answer is replayed for this long. A request holds its key for at most
    # the lease: a gateway that dies mid-request frees the key for the client's retry
    # after it, so the lease must outlast the slowest upload's store + record + enqueue.
    idempotency_ttl_seconds: int = Field(default=86_400, gt=0)
    idempotency_lease_seconds: int = Field(default=60, gt=0)
    # POST /v1/batches (docflow.gateway.batches): at most this many files per request,
    # and at most this many bytes of request body in all (each file is still held to
    # DOCFLOW_MAX_UPLOAD_BYTES). The files are spooled to a temporary file as they
    # arrive, so the body bound is the disk a batch may take while it is received.
    batch_max_files: int = Field(default=1000, gt=0)
    batch_max_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # Fair sharing (docflow.gateway.lanes): a tenant with this many documents or more
    # already in flight, and a batch of more files than this, go to the stages' bulk
    # lanes, which workers take turn about with the document queues, so one tenant's
    # import does not hold up another's upload. 0 turns it off (all on the document queues).
    fair_share_interactive_limit: int = Field(default=4, ge=0)

    # --- Storage (originals and artifacts) ---------------------------------------
    storage_backend: Literal["local", "s3"] = "local"
    storage_path: Path = Path(".data/storage")
    s3_bucket: str = "docflow"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    # --- Extractor ----------------------------------------------------------------
    ocr_languages: str = "eng+deu"
    chunk_tokens: int = Field(default=200, ge=16)
    chunk_overlap_tokens: int = Field(default=40, ge=0)
    max_pdf_pages: int = Field(default=5000, gt=0)
    # PDFs with at least this many pages are split into ranges of
    # `fanout_range_pages` pages, extracted by parallel tasks on the extract queue
    # and merged (docflow.extractor.fanout). A range bounds a task's memory and time.
    fanout_min_pages: int = Field(default=100, gt=0)
    # 10 pages: enough work per task (~30 ms for text, minutes for OCR'd scans, well
    # inside the time limit) to hide the task's own cost, and small enough that two
    # processes share a 300-page PDF evenly.
    fanout_range_pages: int = Field(default=10, gt=0)
    # A DOCX is a zip: the sizes its entries declare are checked before python-docx
    # inflates anything (zip bombs); see readers/word.py.
    max_docx_uncompressed_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # Documents submitted as a URL are fetched by the extractor (docflow.extractor.fetch)
    # under the address rules of docflow.shared.url_safety: true lets it (and the webhook
    # sender) reach loopback, private and link-local addresses (an intranet, tests);
    # cloud metadata addresses stay refused. A fetch may take `connect` to connect,
    # `read` between two reads, `total` in all (redirects included: at most
    # fetch_max_redirects of them); its body is bounded by max_upload_bytes.
    allow_private_urls: bool = False
    fetch_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    fetch_read_timeout_seconds: float = Field(default=30.0, gt=0)
    fetch_total_timeout_seconds: float = Field(default=120.0, gt=0)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)

    # --- Embedder -----------------------------------------------------------------
    embedder: Literal["minilm", "openai", "hash"] = "minilm"
    # How the bundled MiniLM runs: `torch` (sentence-transformers), `onnx` (the same
    # model exported to ONNX, fp32) or `onnx-int8` (most MatMul weights quantized per
    # channel). The default is the fastest that passes the quality gate in
    # tests/quality/ (nDCG@10 on Cranfield within 0.005 of torch, cosine >= 0.98 per
    # chunk): int8, 0.3749 vs torch's 0.3703. The ONNX files are built at install time
    # into `minilm_onnx_dir` (unset: inside the Python environment, see
    # docflow.embedder.providers.minilm_onnx.default_onnx_dir).
    minilm_runtime: Literal["torch", "onnx", "onnx-int8"] = "onnx-int8"
    minilm_onnx_dir: Path | None = None
    # Where the `torch` runtime runs: `cpu`, or `cuda` (a GPU: the chart's embedder.gpu
    # sets it with DOCFLOW_MINILM_RUNTIME=torch and an nvidia.com/gpu resource). The ONNX
    # runtimes run on CPU only.
    minilm_device: Literal["cpu", "cuda"] = "cpu"
    # Chunks per model call (per request for `openai`). Unset: the provider's own
    # default (docflow.embedder.providers.DEFAULT_BATCH_SIZE): 16 for minilm, the
    # fastest batch on CPU (bench/, docs/benchmarks.md), 64 for HTTP endpoints.
    embedding_batch_size: int | None = Field(default=None, gt=0)
    hash_dimensions: int = Field(default=384, gt=0)
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr = SecretStr("")
    openai_model: str = "text-embedding-3-small"
    openai_timeout_seconds: float = 30.0

    # --- Indexer ------------------------------------------------------------------
    vector_store: Literal["lancedb", "pinecone"] = "lancedb"
    lancedb_uri: str = ".data/lancedb"
    pinecone_api_key: SecretStr = SecretStr("")
    pinecone_index_host: str | None = None
    pinecone_index_name: str = "docflow"
    # Vectors per write: Pinecone's limit (it also caps a request at 2 MB, which its
    # store enforces); for LanceDB every write is a commit, so fewer, larger is faster.
    upsert_batch_size: int = Field(default=1000, gt=0, le=1000)
    # Keyword and hybrid search on Pinecone need sparse values beside the dense ones,
    # which Pinecone accepts only in an index with the dotproduct metric; off, those
    # modes are refused (400 naming the backend) and only vector search works.
    pinecone_sparse: bool = False
    # LanceDB maintenance (Task.MAINTAIN, its own worker on Queue.MAINTENANCE):
    # table versions older than this are deleted. A reader works on the version it
    # opened for one operation (a search, a merge, a delete: all far shorter than the
    # index task's hard limit), so this must outlast the longest of them; it also
    # bounds how long a deleted document's rows stay on disk (see docs/reliability.md).
    index_version_retention_seconds: int = Field(default=600, ge=0)
    # A tenant's maintenance runs once this many index writes (documents indexed,
    # deleted, re-tagged) accumulated since its last run, and at the latest this long
    # after the first write of a batch of fewer.
    index_maintenance_writes: int = Field(default=100, gt=0)
    index_maintenance_delay_seconds: int = Field(default=300, gt=0)
    # A re-embed (POST /v1/admin/reembed) keeps at most this many of the tenant's
    # documents in the embed and index queues at a time, so uploads still get their turn.
    reembed_window: int = Field(default=16, ge=1, le=1000)
    # A tenant's vector (ANN) index is built once its table holds this many chunks;
    # below it an exact scan is as fast. Then maintenance keeps the index current.
    vector_index_min_rows: int = Field(default=50_000, gt=0)
    # IVF partitions a query probes and how many times top_k candidates are re-ranked
    # with exact distances (measured: docs/benchmarks.md, the indexer's README).
    vector_index_nprobes: int = Field(default=20, gt=0)
    vector_index_refine_factor: int = Field(default=10, ge=0)

    # --- Webhooks (docflow.shared.webhooks, sent by the indexer's notify worker) -------
    # At most this many webhooks per tenant (POST /v1/webhooks answers 409 beyond).
    webhook_max_per_tenant: int = Field(default=10, ge=1, le=1000)
    # Tries of one delivery before it is dead-lettered (the first one included). Try n+1
    # waits a random time up to webhook_retry_backoff_seconds * 2**(n-1) ("full jitter"),
    # at most webhook_retry_backoff_max_seconds, and at most half the visibility timeout
    # whatever this says (a retry waits for its time in the worker that took it, unacked:
    # longer, and the broker would hand it out again meanwhile).
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_retry_backoff_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_backoff_max_seconds: float = Field(default=900.0, gt=0)
    # One try's bound: to connect, and in all (a receiver that drips its answer is cut off).
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # The stream of final events the dispatcher reads (`<prefix>notifications`) keeps
    # about this many entries; an entry a dispatcher took but did not acknowledge (it
    # died) is taken over by another after this long.
    notifications_stream_max_len: int = Field(default=100_000, ge=1000)
    webhook_dispatch_reclaim_seconds: float = Field(default=60.0, gt=0)

    # --- Task execution -------------------------------------------------------------
    # Soft limits raise inside the task (we record `timeout`); hard limits kill the
    # child. The broker's visibility timeout must exceed every hard limit, or a long
    # task is redelivered while it still runs.
    extract_soft_time_limit: int = 300
    extract_time_limit: int = 360
    embed_soft_time_limit: int = 300
    embed_time_limit: int = 360
    index_soft_time_limit: int = 120
    index_time_limit: int = 180
    # Index maintenance (compaction, index builds on up to millions of chunks) runs
    # in its own worker, so its long limits never hold up documents or searches.
    maintain_soft_time_limit: int = 1500
    maintain_time_limit: int = 1800
    visibility_timeout: int = 3600
    max_retries: int = Field(default=3, ge=0)
    # Retry n waits up to retry_backoff * 2**n seconds (at most retry_backoff_max);
    # with jitter, a random time up to that ("full jitter").
    retry_backoff: int = Field(default=2, ge=1)
    retry_backoff_max: int = 600
    retry_jitter: bool = True
    # Runs of one stage for one document version, retries and redeliveries together.
    # A message redelivered beyond this (its runs keep crashing or hanging the worker:
    # a poison message) is dead-lettered with `redelivery_limit` instead of run again.
    max_deliveries: int = Field(default=10, gt=0)
    # How long Celery keeps a task's state (and the gateway a task id's owner): what
    # GET /v1/tasks reads first. Older runs are answered from the document's record,
    # so a day is enough; every run's three stage results would otherwise stay a week.
    result_expires_seconds: int = Field(default=24 * 3600, gt=0)
    # Dead letters are trimmed by the gateway's sweep: older than the age (0 = kept
    # until replayed or discarded) and beyond the newest count (0 = no bound). A deleted
    # document's letters go with it.
    dead_letter_max_age_seconds: int = Field(default=30 * 24 * 3600, ge=0)
    dead_letter_max_count: int = Field(default=10_000, ge=0)
    worker_concurrency: int = Field(default=1, gt=0)
    # CPU niceness a worker takes at start (its pool processes inherit it). Document and
    # maintenance workers run at 10 in `make run` and the chart, query-only workers at 0:
    # where they share cores, the kernel then gives a search's work the CPU first, and a
    # bulk ingest only what searches leave.
    worker_nice: int = Field(default=0, ge=0, le=19)

    # --- Observability ----------------------------------------------------------------
    log_level: str = "INFO"
    # Workers serve Prometheus metrics on this port (the gateway serves /metrics on
    # its own HTTP port).
    metrics_port: int = Field(default=9100, gt=0, lt=65536)
    # In a pod every interface (Prometheus scrapes the pod IP); the local stack uses
    # 127.0.0.1.
    metrics_host: str = "0.0.0.0"

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _overlap_below_chunk(cls, overlap: int, info) -> int:
        if overlap >= info.data.get("chunk_tokens", overlap + 1):
            raise ValueError("DOCFLOW_CHUNK_OVERLAP_TOKENS must be below DOCFLOW_CHUNK_TOKENS")
        return overlap

    @field_validator("api_keys")
    @classmethod
    def _api_keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    @field_validator("admin_api_keys")
    @classmethod
    def _admin_keys_apart(cls, value: SecretStr, info) -> SecretStr:
        # A key that is both an admin's and a tenant's would act as either: refused.
        tenant_keys = info.data.get("api_keys")
        admin = {k.strip() for k in value.get_secret_value().split(",") if k.strip()}
        if tenant_keys is not None and admin & parse_api_keys(tenant_keys.get_secret_value()).keys():
            raise ValueError("a key in DOCFLOW_ADMIN_API_KEYS is also in DOCFLOW_API_KEYS; "
                             "an operator's key must belong to no tenant")
        return value

    @property
    def tenants_by_key(self) -> dict[str, str]:
        return parse_api_keys(self.api_keys.get_secret_value())

    @property
    def admin_keys(self) -> list[str]:
        return [k.strip() for k in self.admin_api_keys.get_secret_value().split(",") if k.strip()]

    def time_limits(self, stage: Stage) -> tuple[int, int]:
        """(soft, hard) seconds for a stage's tasks."""
        return (
            getattr(self, f"{stage.value}_soft_time_limit"),
            getattr(self, f"{stage.value}_time_limit"),
        )

    def model_post_init(self, _context) -> None:
        longest = max(max(self.time_limits(stage)[1] for stage in Stage), self.maintain_time_limit)
        if self.visibility_timeout <= longest:
            raise ValueError(
                f"DOCFLOW_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed the "
                f"longest hard task time limit ({longest}s)"
            )
        if self.max_deliveries <= self.max_retries:
            raise ValueError(
                f"DOCFLOW_MAX_DELIVERIES ({self.max_deliveries}) must exceed DOCFLOW_MAX_RETRIES "
                f"({self.max_retries}): every retry is a delivery too"
            )
        if self.search_max_concurrent >= self.gateway_threads:
            raise ValueError(f"DOCFLOW_SEARCH_MAX_CONCURRENT ({self.search_max_concurrent}) must stay below "
                             f"DOCFLOW_GATEWAY_THREADS ({self.gateway_threads}): searches must never take "
                             "every thread")
        if self.idempotency_lease_seconds > self.idempotency_ttl_seconds:
            raise ValueError(f"DOCFLOW_IDEMPOTENCY_LEASE_SECONDS ({self.idempotency_lease_seconds}) must not exceed "
                             f"DOCFLOW_IDEMPOTENCY_TTL_SECONDS ({self.idempotency_ttl_seconds})")
        if self.minilm_device == "cuda" and self.minilm_runtime != "torch":
            raise ValueError(f"DOCFLOW_MINILM_DEVICE=cuda needs DOCFLOW_MINILM_RUNTIME=torch (not "
                             f"{self.minilm_runtime!r}): the ONNX runtimes run on CPU only")
        if self.reranker == "http" and not self.reranker_url:
            raise ValueError("DOCFLOW_RERANKER=http needs DOCFLOW_RERANKER_URL (the service's /rerank endpoint)")


@lru_cache
def get_settings() -> Settings:
    return Settings()
