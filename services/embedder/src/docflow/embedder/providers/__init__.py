"""Embedding providers, one module each, chosen by `DOCFLOW_EMBEDDER`."""

from docflow.embedder.providers.base import EmbeddingProvider, l2_normalize
from docflow.embedder.providers.hashing import HashingProvider
from docflow.embedder.providers.minilm import MiniLMProvider, threads_per_process
from docflow.embedder.providers.openai_compatible import OpenAICompatibleProvider
from docflow.shared.settings import Settings

__all__ = ["EmbeddingProvider", "HashingProvider", "MiniLMProvider", "OpenAICompatibleProvider",
           "create_provider", "l2_normalize"]


def create_provider(settings: Settings) -> EmbeddingProvider:
    """The configured provider, not yet loaded (call `load()` in the process that uses it)."""
    if settings.embedder == "minilm":
        return MiniLMProvider(batch_size=settings.embedding_batch_size,
                              threads=threads_per_process(settings.worker_concurrency))
    if settings.embedder == "openai":
        return OpenAICompatibleProvider(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.openai_model,
            timeout_seconds=settings.openai_timeout_seconds,
            batch_size=settings.embedding_batch_size,
        )
    if settings.embedder == "hash":
        return HashingProvider(dimensions=settings.hash_dimensions)
    raise ValueError(f"unknown DOCFLOW_EMBEDDER {settings.embedder!r}")
