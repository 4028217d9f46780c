"""How many torch threads each pool process uses: its share of the CPUs, all of them when alone."""

import multiprocessing

import pytest

from docflow.embedder import loaded_provider
from docflow.embedder.loaded_provider import embedding_slot, fit_threads, remember_pool_size, thread_budget
from docflow.embedder.providers import create_provider
from docflow.embedder.providers.minilm import available_cpus, threads_per_process
from docflow.shared.settings import Settings


@pytest.fixture(autouse=True)
def no_pool():
    loaded_provider.forget_provider()
    yield
    loaded_provider.forget_provider()


def test_outside_a_pool_the_provider_keeps_the_threads_it_was_made_with():
    assert thread_budget() is None
    with embedding_slot():
        assert thread_budget() is None


def test_the_pool_size_the_worker_runs_with_wins_over_the_setting():
    # `celery worker --concurrency 2` with DOCFLOW_WORKER_CONCURRENCY unset (1): each of
    # the two processes must get half the CPUs, not all of them.
    remember_pool_size(2)
    provider = create_provider(Settings(embedder="minilm"), loaded_provider._pool_processes)
    assert provider.threads == threads_per_process(2)
    remember_pool_size("auto")  # Celery's `auto`: one process per CPU
    assert loaded_provider._pool_processes == available_cpus()


def _embed_until_told(started, stop) -> None:
    with embedding_slot():
        started.set()
        stop.wait(10)


def test_a_process_embedding_alone_takes_every_cpu_and_shares_them_once_another_starts():
    remember_pool_size(2)  # in the parent, before the pool forks
    assert thread_budget() == available_cpus()  # nobody embedding
    with embedding_slot():
        assert thread_budget() == available_cpus()  # alone
        fork = multiprocessing.get_context("fork")
        started, stop = fork.Event(), fork.Event()
        other = fork.Process(target=_embed_until_told, args=(started, stop))
        other.start()
        try:
            assert started.wait(10)
            assert thread_budget() == max(1, available_cpus() // 2)  # a sibling process embeds too
        finally:
            stop.set()
            other.join(10)
        assert thread_budget() == available_cpus()  # its slot was given back


def test_the_slot_is_given_back_when_the_task_fails():
    remember_pool_size(2)
    with pytest.raises(RuntimeError), embedding_slot():
        raise RuntimeError("the model call failed")
    assert loaded_provider._embedding_now.value == 0


def test_fit_threads_resizes_torchs_pool_of_a_loaded_minilm():
    torch = pytest.importorskip("torch")
    provider = create_provider(Settings(embedder="minilm", minilm_runtime="torch", embedding_batch_size=2), 1)
    provider.load()
    before = torch.get_num_threads()
    try:
        remember_pool_size(2)
        fit_threads(provider)
        assert torch.get_num_threads() == available_cpus()
        provider.use_threads(1)
        assert torch.get_num_threads() == 1
        assert provider.embed(["still embeds"]).shape == (1, 384)
    finally:
        torch.set_num_threads(before)
