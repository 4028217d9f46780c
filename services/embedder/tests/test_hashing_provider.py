import os
import subprocess
import sys

import numpy as np

from docflow.embedder.providers import HashingProvider, create_provider
from docflow.shared.settings import Settings


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # rows are unit length


def test_same_text_gives_same_vector_in_every_instance():
    first = HashingProvider(dimensions=128).embed(["Invoices are due in thirty days"])
    second = HashingProvider(dimensions=128).embed(["Invoices are due in thirty days"])
    np.testing.assert_array_equal(first, second)


def test_vectors_do_not_depend_on_the_interpreters_hash_seed():
    # A document embedded by one worker is searched with a query embedded by another:
    # Python's salted hash() would make every process disagree.
    script = "from docflow.embedder.providers import HashingProvider as H; print(H(16).embed(['alpha beta'])[0].tolist())"
    outputs = {
        subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2")
    }
    assert outputs == {str(HashingProvider(16).embed(["alpha beta"])[0].tolist()) + "\n"}


def test_case_and_punctuation_do_not_matter():
    provider = HashingProvider(dimensions=64)
    np.testing.assert_array_equal(provider.embed(["alpha beta"]), provider.embed(["ALPHA, beta!"]))


def test_rows_are_unit_length_float32_with_configured_dimensions():
    matrix = HashingProvider(dimensions=96).embed(["one", "two words", "", "!!!"])
    assert matrix.shape == (4, 96)
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-6)


def test_similar_texts_score_higher_than_unrelated_ones():
    query, similar, unrelated = HashingProvider(dimensions=384).embed([
        "the cat sat on the mat",
        "a cat sat on a mat by the door",
        "quarterly revenue grew in every region",
    ])
    assert cosine(query, similar) > cosine(query, unrelated) + 0.3


def test_factory_builds_hashing_from_settings():
    provider = create_provider(Settings(embedder="hash", hash_dimensions=32))
    assert provider.name == "hash"
    assert provider.dimensions == 32
    assert provider.embed(["x"]).shape == (1, 32)


def test_a_search_can_embed_with_the_model_a_tenants_index_holds(monkeypatch):
    """A tenant being re-embedded keeps its old model for searches: the query embedder
    builds that model beside the configured one (docs/architecture.md, "Re-embedding")."""
    from docflow.embedder import loaded_provider
    from docflow.embedder.providers import settings_for_model
    from docflow.shared.settings import Settings

    settings = Settings(embedder="hash", hash_dimensions=128)
    assert settings_for_model(settings, "hash:feature-hashing:256").hash_dimensions == 256
    assert settings_for_model(settings, "minilm:all-MiniLM-L6-v2:384").embedder == "minilm"
    assert settings_for_model(settings, "minilm:all-MiniLM-L6-v2:768") is None
    assert settings_for_model(settings, "cohere:embed-v3:1024") is None

    monkeypatch.setattr(loaded_provider, "get_settings", lambda: settings)
    loaded_provider.forget_provider()
    try:
        assert loaded_provider.provider_for_model(None).dimensions == 128
        assert loaded_provider.provider_for_model("hash:feature-hashing:128").dimensions == 128
        old = loaded_provider.provider_for_model("hash:feature-hashing:256")
        assert old.dimensions == 256 and old is loaded_provider.provider_for_model("hash:feature-hashing:256")
        # A model this embedder cannot build: the configured one answers (the indexer then refuses, 409).
        assert loaded_provider.provider_for_model("cohere:embed-v3:1024").dimensions == 128
    finally:
        loaded_provider.forget_provider()
