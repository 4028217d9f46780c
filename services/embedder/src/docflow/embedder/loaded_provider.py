"""The one embedding provider of this process, loaded after fork and reused by every task."""

import multiprocessing
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from docflow.embedder.providers import EmbeddingProvider, create_provider, settings_for_model
from docflow.embedder.providers.minilm import available_cpus
from docflow.shared.settings import get_settings

log = structlog.get_logger(__name__)

_provider: EmbeddingProvider | None = None
# The size of this worker's prefork pool, set in the parent before it forks (see
# `remember_pool_size`); None outside a worker (tests, solo) means the settings' value.
_pool_processes: int | None = None
# How many of the pool's processes are embedding a document right now: shared memory
# made in the parent before fork, so every child sees the same counter. None: no pool.
_embedding_now = None
# Only the threads pool runs tasks concurrently in one process; load once there too.
_lock = threading.Lock()


def get_provider() -> EmbeddingProvider:
    """The loaded provider; loads it now if the pool never ran `load_provider` (solo, tests)."""
    global _provider
    with _lock:
        if _provider is None:
            provider = create_provider(get_settings(), _pool_processes)
            provider.load()
            _provider = provider
            log.info("embedding provider loaded", provider=provider.name, runtime=provider.runtime,
                     threads=getattr(provider, "threads", None))
        return _provider


# Providers of other models than the configured one, loaded on first use by a search of
# a tenant whose active index still holds such a model (during its re-embed): model
# identity -> provider, or None when this embedder cannot build it. A few at most.
_other_models: dict[str, EmbeddingProvider | None] = {}


def is_model(provider: EmbeddingProvider, identity: str) -> bool:
    """Whether `provider` computes the model `identity` names (an openai endpoint's width
    is only known from its answers: its name and model decide then)."""
    try:
        dimensions = str(provider.dimensions)
    except Exception:
        dimensions = None
    head, _, width = identity.rpartition(":")
    return head == f"{provider.name}:{provider.model_name}" and (dimensions is None or dimensions == width)


def provider_for_model(identity: str | None) -> EmbeddingProvider:
    """The provider of model `identity`: the configured one when it is that model (or none
    is named), else one built for it once per process from the settings with that model
    (docs/architecture.md, "Re-embedding"). When it cannot be built the configured
    provider answers, and the indexer refuses its vector (the search's 409)."""
    configured = get_provider()
    if identity is None or is_model(configured, identity):
        return configured
    with _lock:
        if identity not in _other_models:
            settings = settings_for_model(get_settings(), identity)
            provider = None
            if settings is not None:
                try:
                    provider = create_provider(settings, _pool_processes)
                    provider.load()
                    log.info("loaded another model for searches", model=identity, runtime=provider.runtime)
                except Exception:
                    log.exception("could not load the model a tenant's index holds", model=identity)
                    provider = None
            _other_models[identity] = provider
        return _other_models[identity] or configured


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
    global _provider, _pool_processes, _embedding_now
    with _lock:
        _provider = None
        _other_models.clear()
        _pool_processes = None
        _embedding_now = None


def remember_pool_size(concurrency: object) -> None:
    """Record the worker's pool size (Celery's worker_init, in the parent, before fork).

    Each pool process sizes torch's thread pool as CPUs / pool processes. The pool size
    must come from the worker itself: `celery worker --concurrency 2` with
    DOCFLOW_WORKER_CONCURRENCY unset gave each of the 2 processes 2 threads on 2
    cores, 4 busy threads that slowed both. `auto` resolves to one process per CPU.
    """
    global _pool_processes, _embedding_now
    try:
        _pool_processes = max(1, int(concurrency))
    except (TypeError, ValueError):
        _pool_processes = available_cpus()
    _embedding_now = multiprocessing.Value("i", 0) if _pool_processes > 1 else None


@contextmanager
def embedding_slot() -> Iterator[None]:
    """Count this process among the pool's processes that are embedding, while inside."""
    counter = _embedding_now
    if counter is None:
        yield
        return
    with counter.get_lock():
        counter.value += 1
    try:
        yield
    finally:
        with counter.get_lock():
            counter.value -= 1


def thread_budget() -> int | None:
    """Threads this process should use for its next model call, or None: keep its own.

    With one pool process per core, each runs its model single-threaded: two documents
    at a time on 2 cores, one per core, beat one document on both (torch's intra-op
    threads scale poorly at these small matrices, and a busy core stalls every other
    thread of the team at each barrier). But when the others are idle (the last
    document of a burst, or a lone upload) one thread would leave cores unused: a
    process that embeds alone takes them all, and gives them back at its next batch
    once another starts. (A pool process killed mid-task never gives its slot back: the
    others then keep to their share, as without this budget, until the worker restarts.)
    """
    counter = _embedding_now
    if counter is None:
        return None
    return max(1, available_cpus() // max(1, counter.value))


def fit_threads(provider: EmbeddingProvider) -> None:
    """Resize the provider's thread pool to `thread_budget()` (providers with threads only)."""
    budget = thread_budget()
    if budget is not None and hasattr(provider, "use_threads"):
        provider.use_threads(budget)
