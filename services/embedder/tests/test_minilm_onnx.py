"""The bundled MiniLM on ONNX Runtime: the files scripts/bootstrap.sh built, checked before use.

Search quality against torch on a whole collection is the gate in tests/quality/; here,
the same vectors on a few sentences, and a clear refusal of a missing, altered or stale
file, by the provider and by a real worker's start.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docflow.embedder.providers import MiniLMOnnxProvider, MiniLMProvider, OnnxModelError, create_provider
from docflow.embedder.providers.minilm_onnx import (
    FP32_FILE, INT8_FILE, MANIFEST_FILE, TOKENIZER_FILES, default_onnx_dir, verified,
)
from docflow.shared.names import Queue
from docflow.shared.settings import Settings

CELERY = str(Path(sys.executable).parent / "celery")
SENTENCES = ["How do I reset my password?",
             "Steps to recover access when you forgot your login credentials",
             "The train to Munich leaves from platform nine",
             "boundary layer transition on a swept wing at supersonic speed " * 12]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    provider = create_provider(Settings(embedder="minilm", minilm_runtime="torch"), pool_processes=1)
    provider.load()
    return provider.embed(SENTENCES)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The installed ONNX files, copied so that a test may break them."""
    copy = tmp_path / "minilm-onnx"
    shutil.copytree(default_onnx_dir(), copy)
    return copy


def test_the_install_built_every_file_as_its_manifest_records():
    assert verified(default_onnx_dir()), f"run scripts/bootstrap.sh: the files in {default_onnx_dir()}"


@pytest.mark.parametrize("runtime, min_cosine", [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_each_runtime_gives_torchs_vectors(runtime, min_cosine, torch_vectors):
    provider = create_provider(Settings(embedder="minilm", minilm_runtime=runtime, embedding_batch_size=2),
                               pool_processes=1)
    assert isinstance(provider, MiniLMOnnxProvider) and provider.runtime == runtime
    vectors = provider.embed(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    assert provider.dimensions == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert np.min(np.sum(vectors * torch_vectors, axis=1)) >= min_cosine
    query, paraphrase, unrelated, _ = vectors
    assert query @ paraphrase > query @ unrelated + 0.2
    # Batches pad to their longest text: a text's vector must not depend on its neighbours
    # beyond int8's own rounding (dynamic quantization scales activations per batch).
    one_by_one = np.vstack([provider.embed([text]) for text in SENTENCES])
    if runtime == "onnx":
        np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    else:
        assert np.min(np.sum(vectors * one_by_one, axis=1)) >= 0.99
    assert provider.embed([]).shape == (0, 384)


def test_torch_stays_the_runtime_of_its_own_name():
    provider = create_provider(Settings(embedder="minilm", minilm_runtime="torch"), pool_processes=1)
    assert isinstance(provider, MiniLMProvider) and provider.runtime == "torch"


def test_a_missing_file_is_refused_naming_it(model_copy: Path):
    (model_copy / INT8_FILE).unlink()
    with pytest.raises(OnnxModelError, match=rf"{model_copy / INT8_FILE} is missing.*onnx_build"):
        MiniLMOnnxProvider("onnx-int8", model_copy, batch_size=16, threads=1).load()


def test_an_altered_file_is_refused_naming_it(model_copy: Path):
    with (model_copy / FP32_FILE).open("r+b") as model:
        model.seek(-1000, os.SEEK_END)
        byte = model.read(1)
        model.seek(-1000, os.SEEK_END)
        model.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(OnnxModelError, match=rf"{model_copy / FP32_FILE} differs from its recorded sha256"):
        MiniLMOnnxProvider("onnx", model_copy, batch_size=16, threads=1).load()
    assert not verified(model_copy)


def test_files_of_an_older_recipe_or_without_a_manifest_are_refused(model_copy: Path):
    manifest = json.loads((model_copy / MANIFEST_FILE).read_text())
    (model_copy / MANIFEST_FILE).write_text(json.dumps({**manifest, "recipe": "an-older-recipe/1"}))
    with pytest.raises(OnnxModelError, match="built by recipe 'an-older-recipe/1'"):
        MiniLMOnnxProvider("onnx-int8", model_copy, batch_size=16, threads=1).load()
    (model_copy / MANIFEST_FILE).unlink()
    with pytest.raises(OnnxModelError, match="has no recorded hash"):
        MiniLMOnnxProvider("onnx-int8", model_copy, batch_size=16, threads=1).load()


def test_the_model_folder_holds_what_the_runtime_reads(model_copy: Path):
    assert {path.name for path in model_copy.iterdir()} == {FP32_FILE, INT8_FILE, MANIFEST_FILE, *TOKENIZER_FILES}


def test_a_worker_with_an_altered_model_file_refuses_to_start_and_says_which(
        redis_server, model_copy: Path, tmp_path: Path):
    """The real `celery worker`: it exits before taking a message, naming the file."""
    with (model_copy / INT8_FILE).open("ab") as model:
        model.write(b"\0")
    env = {**os.environ, "DOCFLOW_REDIS_URL": redis_server.url, "DOCFLOW_STORAGE_PATH": str(tmp_path / "storage"),
           "DOCFLOW_EMBEDDER": "minilm", "DOCFLOW_MINILM_RUNTIME": "onnx-int8",
           "DOCFLOW_MINILM_ONNX_DIR": str(model_copy)}
    finished = subprocess.run([CELERY, "-A", "docflow.embedder.worker", "worker", "-Q", Queue.EMBED.value,
                               "--pool", "solo", "--loglevel", "INFO"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode != 0
    assert f"{model_copy / INT8_FILE} differs from its recorded sha256" in finished.stderr + finished.stdout
