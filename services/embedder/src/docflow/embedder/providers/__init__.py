"""Embedding providers, one module each, chosen by `DOCFLOW_EMBEDDER`."""

from docflow.embedder.providers.base import EmbeddingProvider, l2_normalize
from docflow.embedder.providers.hashing import HashingProvider
from docflow.embedder.providers.minilm import MODEL_DIMENSIONS, MiniLMProvider, threads_per_process
from docflow.embedder.providers.minilm_onnx import (
    MODEL_FILE_OF_RUNTIME, MiniLMOnnxProvider, OnnxModelError, check_model_file, default_onnx_dir,
)
from docflow.embedder.providers.openai_compatible import OpenAICompatibleProvider
from docflow.shared.embedding_models import model_identity
from docflow.shared.settings import Settings

__all__ = ["DEFAULT_BATCH_SIZE", "EmbeddingProvider", "HashingProvider", "MiniLMOnnxProvider", "MiniLMProvider",
           "OnnxModelError", "OpenAICompatibleProvider", "batch_size", "check_model_files", "create_provider",
           "describe", "l2_normalize", "settings_for_model"]

# Chunks per model call when DOCFLOW_EMBEDDING_BATCH_SIZE is unset. MiniLM on CPU
# runs fastest at 8-16 (bench/run.py sweeps it; larger batches only cost activation
# memory: about +0.2 GB at 16, +0.5 GB at 64). An HTTP endpoint wants fewer, larger
# requests.
DEFAULT_BATCH_SIZE = {"minilm": 16, "openai": 64, "hash": 64}


def batch_size(settings: Settings) -> int:
    return settings.embedding_batch_size or DEFAULT_BATCH_SIZE[settings.embedder]


def create_provider(settings: Settings, pool_processes: int | None = None) -> EmbeddingProvider:
    """The configured provider, not yet loaded (call `load()` in the process that uses it).

    `pool_processes`: how many processes of this worker share the CPUs (the pool's
    real size, which `--concurrency` may have set apart from DOCFLOW_WORKER_CONCURRENCY).
    """
    if settings.embedder == "minilm":
        threads = threads_per_process(pool_processes or settings.worker_concurrency)
        if settings.minilm_runtime == "torch":
            return MiniLMProvider(batch_size=batch_size(settings), threads=threads, device=settings.minilm_device)
        return MiniLMOnnxProvider(runtime=settings.minilm_runtime,
                                  model_dir=settings.minilm_onnx_dir or default_onnx_dir(),
                                  batch_size=batch_size(settings), threads=threads)
    if settings.embedder == "openai":
        return OpenAICompatibleProvider(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.openai_model,
            timeout_seconds=settings.openai_timeout_seconds,
            batch_size=batch_size(settings),
        )
    if settings.embedder == "hash":
        return HashingProvider(dimensions=settings.hash_dimensions)
    raise ValueError(f"unknown DOCFLOW_EMBEDDER {settings.embedder!r}")


def settings_for_model(settings: Settings, identity: str) -> Settings | None:
    """The settings that would make `create_provider` build the model `identity` names
    (`provider:model:dimensions`), keeping every other setting (MiniLM's runtime, the
    endpoint of `openai`); None if no provider of this embedder builds it. A search of a
    tenant whose index holds another model than the configured one embeds its query with
    this (docs/architecture.md, "Re-embedding")."""
    provider, _, rest = identity.partition(":")
    model, _, dimensions = rest.rpartition(":")
    if not dimensions.isdigit():
        return None
    if provider == "hash" and model == HashingProvider.model_name:
        return settings.model_copy(update={"embedder": "hash", "hash_dimensions": int(dimensions)})
    if provider == "minilm" and model == MiniLMProvider.model_name and int(dimensions) == MODEL_DIMENSIONS:
        return settings.model_copy(update={"embedder": "minilm"})
    if provider == "openai" and model and settings.openai_base_url:
        return settings.model_copy(update={"embedder": "openai", "openai_model": model})
    return None


def check_model_files(settings: Settings) -> None:
    """Raise OnnxModelError, naming the file, if the configured runtime's model file is
    missing or not as built: checked once when a worker starts, so a broken install
    stops the worker at once instead of failing every document it takes."""
    if settings.embedder == "minilm" and settings.minilm_runtime in MODEL_FILE_OF_RUNTIME:
        check_model_file(settings.minilm_onnx_dir or default_onnx_dir(),
                         MODEL_FILE_OF_RUNTIME[settings.minilm_runtime])


def describe(settings: Settings) -> dict[str, object]:
    """The configured provider, its model and runtime, from the settings alone (nothing
    loaded: a worker's main process answers with it, its pool processes hold the model).

    `dimensions` and `model_id` are null for `openai` until a vector was seen: an
    endpoint's width is only known from its answer; so is `device` (the server's own).
    """
    provider = create_provider(settings, pool_processes=1)
    dimensions = {"minilm": MODEL_DIMENSIONS, "hash": settings.hash_dimensions}.get(settings.embedder)
    return {"provider": provider.name, "model": provider.model_name, "runtime": provider.runtime,
            "device": getattr(provider, "device", None), "dimensions": dimensions,
            "model_id": model_identity(provider.name, provider.model_name, dimensions) if dimensions else None}
