"""The embedder's Celery worker:

    celery -A docflow.embedder.worker worker -Q docflow.query.embed,docflow.embed   # documents
    celery -A docflow.embedder.worker worker -Q docflow.query.embed                 # query-only

The document worker takes the query queue first, as a fallback for the query-only one
(`docflow.shared.names.queues_of_role`, which `make run` and the chart start them with).

Importing this module must stay cheap and must not import torch: Celery imports it
in the parent process, which then forks the pool. The model is loaded in each pool
process by `load_provider` (worker_process_init), or on first use otherwise.
"""

from functools import cache

from celery import signals
from celery.worker.control import inspect_command

from docflow.embedder.loaded_provider import load_provider, remember_pool_size
from docflow.embedder.providers import OnnxModelError, check_model_files, describe
from docflow.shared.embedding_models import EMBEDDER_INSPECT_COMMAND
from docflow.shared.names import Stage
from docflow.shared.settings import get_settings
from docflow.shared.worker import create_worker_app

app = create_worker_app(Stage.EMBED, include=["docflow.embedder.tasks"], on_process_start=load_provider)


@signals.worker_init.connect(weak=False)
def _remember_pool_size(sender=None, **_kwargs) -> None:
    """The pool's size as the worker resolved it (`--concurrency` wins over the setting)."""
    remember_pool_size(getattr(sender, "concurrency", None))


@signals.worker_init.connect(weak=False)
def _refuse_to_start_without_the_model(**_kwargs) -> None:
    """A missing or altered ONNX file stops the worker with the reason, before it takes
    a message. (SystemExit, since Celery logs and ignores a signal handler's Exception.)"""
    try:
        check_model_files(get_settings())
    except OnnxModelError as exc:
        raise SystemExit(f"docflow embedder cannot start: {exc}") from exc


@cache
def _described() -> dict[str, object]:
    return describe(get_settings())


@inspect_command(name=EMBEDDER_INSPECT_COMMAND)
def _embedder_model(state, **_kwargs) -> dict[str, object]:
    """What this worker embeds with (provider, model, runtime), for GET /v1/admin/workers.

    Answered by the worker's main process from its settings, which its pool processes
    load the same provider from; nothing is loaded or computed, so it answers at once
    even while every pool process is busy embedding.
    """
    return _described()
