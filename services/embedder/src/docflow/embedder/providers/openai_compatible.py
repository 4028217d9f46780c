"""Any OpenAI-compatible embeddings endpoint: OpenAI, TEI, vLLM, Ollama.

All of them serve `POST {base_url}/embeddings` with `{"model", "input": [...]}` and
answer `{"data": [{"index", "embedding"}, ...]}`. Every failure is a TransientError
so Celery retries with backoff and finally dead-letters the task for replay: an
outage heals by itself, and a rejected request (bad key, unknown model) is fixed by
configuration, after which the dead letter can be replayed.
"""

from collections.abc import Sequence

import httpx
import numpy as np

from docflow.embedder.providers.base import l2_normalize
from docflow.shared.errors import ErrorCode, TransientError

# Enough of an error body to show the server's reason without flooding the status record.
_ERROR_BODY_CHARS = 500


def _unavailable(message: str) -> TransientError:
    return TransientError(ErrorCode.EMBEDDER_UNAVAILABLE, message)


class OpenAICompatibleProvider:
    name = "openai"
    runtime = "http"

    def __init__(self, base_url: str, api_key: str, model: str, timeout_seconds: float,
                 batch_size: int) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.model_name = model
        self.batch_size = batch_size
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_seconds
        self._client: httpx.Client | None = None
        self._dimensions: int | None = None

    def load(self) -> None:
        # The connection pool is opened per process, after fork, like every other resource.
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, headers=self._headers)

    @property
    def dimensions(self) -> int:
        """Learned from the first response; asks the server once if nothing was embedded yet."""
        if self._dimensions is None:
            self.embed(["dimension probe"])
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.empty((0, self._dimensions or 0), dtype=np.float32)
        batches = [self._embed_batch(list(texts[start:start + self.batch_size]))
                   for start in range(0, len(texts), self.batch_size)]
        return np.vstack(batches)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        try:
            response = self._client.post(self.url, json={"model": self.model, "input": texts})
        except httpx.TimeoutException as exc:
            raise _unavailable(f"{self.url} timed out after {self._timeout}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _unavailable(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from exc

        status = response.status_code
        if status == 429 or status >= 500:
            raise _unavailable(f"{self.url} answered HTTP {status}")
        if status >= 400:
            body = response.text[:_ERROR_BODY_CHARS]
            raise _unavailable(f"{self.url} rejected the request (check DOCFLOW_OPENAI_* "
                               f"settings): HTTP {status}: {body}")
        return self._parse(response, expected_rows=len(texts))

    def _parse(self, response: httpx.Response, expected_rows: int) -> np.ndarray:
        try:
            data = response.json()["data"]
            # The API does not promise `data` in input order; `index` is the contract.
            rows = [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]
            matrix = np.asarray(rows, dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise _unavailable(f"{self.url} sent an unreadable response: {exc}") from exc
        if matrix.ndim != 2 or matrix.shape[0] != expected_rows:
            raise _unavailable(f"{self.url} returned {matrix.shape[0] if matrix.ndim else 0} "
                               f"vectors for {expected_rows} inputs")
        if self._dimensions is None:
            self._dimensions = matrix.shape[1]
        elif matrix.shape[1] != self._dimensions:
            raise _unavailable(f"{self.url} switched from {self._dimensions} to "
                               f"{matrix.shape[1]} dimensions")
        # OpenAI's vectors are unit length already; TEI and Ollama need not be.
        return l2_normalize(matrix)
