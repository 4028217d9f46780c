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

from docflow.shared.names import Stage

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_api_keys(raw: str) -> dict[str, str]:
    """Parse `key=tenant,key2=tenant2` into {key: tenant}; reject malformed pairs."""
    keys: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, tenant = pair.partition("=")
        key, tenant = key.strip(), tenant.strip()
        if not sep or not key or not TENANT_PATTERN.match(tenant):
            raise ValueError(
                "DOCFLOW_API_KEYS must be comma-separated key=tenant pairs; tenants are "
                f"lowercase letters, digits, '-' or '_' (bad pair: {pair.split('=')[0][:4]}...)"
            )
        keys[key] = tenant
    return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCFLOW_", extra="ignore")

    # --- Redis: broker, result backend and status store -------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "docflow:"

    # --- Gateway ----------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    api_keys: SecretStr = SecretStr("")
    # Operators' keys (comma-separated) for /v1/admin routes; they belong to no tenant.
    admin_api_keys: SecretStr = SecretStr("")
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    search_timeout_seconds: float = Field(default=30.0, gt=0)
    list_page_size_max: int = Field(default=100, gt=0)

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

    # --- Embedder -----------------------------------------------------------------
    embedder: Literal["minilm", "openai", "hash"] = "minilm"
    embedding_batch_size: int = Field(default=64, gt=0)
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
    upsert_batch_size: int = Field(default=500, gt=0, le=1000)

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
    visibility_timeout: int = 3600
    max_retries: int = Field(default=3, ge=0)
    retry_backoff_max: int = 600
    worker_concurrency: int = Field(default=1, gt=0)

    # --- Observability ----------------------------------------------------------------
    log_level: str = "INFO"
    # Workers serve Prometheus metrics on this port (the gateway serves /metrics on
    # its own HTTP port).
    metrics_port: int = Field(default=9100, gt=0, lt=65536)

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
        longest = max(self.time_limits(stage)[1] for stage in Stage)
        if self.visibility_timeout <= longest:
            raise ValueError(
                f"DOCFLOW_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed the "
                f"longest hard task time limit ({longest}s)"
            )


@lru_cache
def get_settings() -> Settings:
    return Settings()
