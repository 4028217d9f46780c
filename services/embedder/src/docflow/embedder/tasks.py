"""The embed stage's tasks: a document's chunks to a matrix in storage, and a query to a vector."""

from typing import Any

import numpy as np
import structlog
from celery.exceptions import Ignore

from docflow.embedder import providers
from docflow.embedder.loaded_provider import embedding_slot, fit_threads, get_provider, provider_for_model
from docflow.embedder.worker import app
from docflow.shared import artifacts, metrics
from docflow.shared.embedding_models import QueryVector, model_identity
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.messages import PipelineMessage, version_prefix
from docflow.shared.names import Task
from docflow.shared.reembed import ReembedMessage, Reembeds, reembedded_artifact
from docflow.shared.stage_task import DocflowTask, StageTask
from docflow.shared.status import DocumentStatus

log = structlog.get_logger(__name__)


def read_chunk_texts(data: bytes) -> list[str]:
    """Texts of the extractor's chunks.json, in file order (row i of the matrix = entry i)."""
    return [chunk.text for chunk in artifacts.load_chunks(data)]


def longest_first(texts: list[str]) -> np.ndarray:
    """Row indices in the order to embed them: longest text first, ties in file order.

    A model batch is padded to its longest text. Cut in file order, a batch of a
    document whose chunks range from 40 to 250 tokens pays for its longest chunk in
    every row; cut after sorting, each batch holds texts of about one length. This is
    the order SentenceTransformer.encode uses within one call (by character length),
    so per-batch calls here cost what one encode call over the whole document does.
    """
    return np.argsort([-len(text) for text in texts], kind="stable")


@app.task(base=StageTask, name=Task.EMBED.value, bind=True)
def embed_document(self: StageTask, message: dict[str, Any]) -> dict[str, Any]:
    msg = self.begin(message)
    if msg.chunks_key is None:
        raise PermanentError(ErrorCode.ARTIFACT_MISSING, "the message names no chunks to embed")
    texts = read_chunk_texts(self.storage.get(msg.chunks_key))
    if not texts:
        raise PermanentError(ErrorCode.EMPTY_DOCUMENT, "the document has no chunks to embed")

    provider = get_provider()

    def after_batch(done: int) -> None:
        self.report(msg, done, len(texts))
        _stop_if_superseded(self, msg)

    matrix = embed_texts(provider, texts, providers.batch_size(self.settings), after_batch)

    key = msg.key(artifacts.EMBEDDINGS)
    if not self.store_artifacts(msg, {key: artifacts.dump_embeddings(matrix)}):
        raise Ignore()  # deleted or reprocessed meanwhile: nothing of it written
    model = model_identity(provider.name, provider.model_name, matrix.shape[1])
    log.info("document embedded", chunks=len(texts), dimensions=matrix.shape[1], provider=provider.name,
             model=model, runtime=provider.runtime)
    return msg.model_copy(update={"embeddings_key": key, "embedding_model": model,
                                  "embedding_runtime": provider.runtime}).model_dump()


def embed_texts(provider, texts: list[str], batch_size: int, after_batch=None) -> np.ndarray:
    """Every text's vector (row i for text i), embedded longest first in batches;
    `after_batch(done)` runs after each (progress, and stopping a superseded run)."""
    order = longest_first(texts)
    matrix: np.ndarray | None = None
    with embedding_slot():
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            fit_threads(provider)
            vectors = provider.embed([texts[i] for i in rows])
            if matrix is None:
                matrix = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            matrix[rows] = vectors
            metrics.EMBEDDINGS_COMPUTED.labels(provider.name, provider.runtime).inc(len(rows))
            if after_batch is not None:
                after_batch(min(start + batch_size, len(texts)))
    return matrix


def _stop_if_superseded(task: StageTask, msg: PipelineMessage) -> None:
    """A long document may be cancelled, deleted or reprocessed meanwhile: stop paying for it."""
    if not task.status.is_current(msg.document_id, msg.version):
        log.info("stopping: document cancelled, deleted or reprocessed while embedding")
        raise Ignore()


# A user is waiting on a search: no retries and no dead letter; the gateway reports
# the failure at once.
@app.task(base=DocflowTask, name=Task.EMBED_QUERY.value, bind=True, autoretry_for=(),
          dead_letter_on_failure=False)
def embed_query(self: DocflowTask, query: str, model: str | None = None) -> dict[str, Any]:
    """The query's vector and the model that made it (shared.embedding_models.QueryVector):
    the indexer refuses to search a tenant's index of another model with it.

    `model`: the model of the tenant's active index when the gateway knows it (a tenant
    being or having been re-embedded), embedded with even if it is not the configured
    one, so searches go on during a re-embed (docs/architecture.md, "Re-embedding")."""
    provider = provider_for_model(model)
    vector = provider.embed([query])[0]
    return QueryVector(vector=vector.tolist(),
                       model_id=model_identity(provider.name, provider.model_name, len(vector)),
                       runtime=provider.runtime).model_dump()


class ReembedEmbedTask(DocflowTask):
    """A document whose re-embedding finally fails is counted as failed by its job (the
    indexer's task of the chain never runs then)."""

    dead_letter_on_failure = False  # the job reports it; a new re-embed retries it

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        Reembeds(self.redis, self.settings.redis_key_prefix).note_task_failure(args, exc)


@app.task(base=ReembedEmbedTask, name=Task.REEMBED_EMBED.value, bind=True)
def reembed_document(self: ReembedEmbedTask, message: dict[str, Any]) -> dict[str, Any]:
    """A completed document's chunks embedded again with the configured model, for the
    indexer to write into a re-embed's new generation (docs/architecture.md,
    "Re-embedding"). A document deleted or reprocessed since is passed on unembedded."""
    msg = ReembedMessage.model_validate(message)
    record = self.status.get(msg.document_id)
    if record is None or record.version != msg.version or record.status is not DocumentStatus.COMPLETED:
        return msg.model_dump()
    texts = read_chunk_texts(self.storage.get(msg.chunks_key))
    if not texts:
        raise PermanentError(ErrorCode.EMPTY_DOCUMENT, "the document has no chunks to embed")
    provider = get_provider()
    matrix = embed_texts(provider, texts, providers.batch_size(self.settings))
    key = version_prefix(msg.tenant, msg.document_id, msg.version) + reembedded_artifact(msg.generation)
    self.storage.put(key, artifacts.dump_embeddings(matrix))
    model = model_identity(provider.name, provider.model_name, matrix.shape[1])
    return msg.model_copy(update={"embeddings_key": key, "embedding_model": model,
                                  "embedding_runtime": provider.runtime}).model_dump()
