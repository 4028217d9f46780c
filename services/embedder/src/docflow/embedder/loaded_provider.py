"""The one embedding provider of this process, loaded after fork and reused by every task."""

import threading

import structlog

from docflow.embedder.providers import EmbeddingProvider, create_provider
from docflow.shared.settings import get_settings

log = structlog.get_logger(__name__)

_provider: EmbeddingProvider | None = None
# Only the threads pool runs tasks concurrently in one process; load once there too.
_lock = threading.Lock()


def get_provider() -> EmbeddingProvider:
    """The loaded provider; loads it now if the pool never ran `load_provider` (solo, tests)."""
    global _provider
    with _lock:
        if _provider is None:
            provider = create_provider(get_settings())
            provider.load()
            _provider = provider
            log.info("embedding provider loaded", provider=provider.name)
        return _provider


def load_provider() -> None:
    """Run in each pool process after fork (Celery's worker_process_init).

    A failure is logged, not raised: a crashing pool process is only restarted and
    crashes again, whereas a task that hits the same error records it on the document
    and is dead-lettered for replay.
    """
    try:
        get_provider()
    except Exception:
        log.exception("loading the embedding provider failed; tasks will retry the load")


def forget_provider() -> None:
    """Drop the loaded provider, so the next use reads the settings again (tests)."""
    global _provider
    with _lock:
        _provider = None
