"""The embed task end to end, in this process: real Redis, files in tmp_path, hashing."""

import json

import numpy as np
import pytest

from docflow.embedder.providers import HashingProvider
from docflow.embedder.tasks import embed_document as embed_document_task
from docflow.embedder.tasks import embed_query
from docflow.shared.artifacts import load_embeddings as matrix_from_npy
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import ErrorCode
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Task
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

CHUNK_TEXTS = [
    "Invoices are payable within thirty days.",
    "Late payments incur a two percent fee.",
    "The warehouse in Hamburg ships on Mondays.",
    "Returns need a receipt.",
    "Support answers within one business day.",
]


@pytest.fixture
def embed_document():
    # The task instance itself (not Celery's lazy proxy), so a test can patch its methods.
    return embed_document_task._get_current_object()


@pytest.fixture
def status(pipeline_env, redis_client) -> StatusStore:
    return StatusStore(redis_client, pipeline_env.redis_key_prefix)


@pytest.fixture
def storage(pipeline_env) -> LocalStorage:
    return LocalStorage(pipeline_env.storage_path)


def extracted_document(status: StatusStore, storage: LocalStorage, texts: list[str],
                       document_id: str = "doc-1") -> PipelineMessage:
    """A document as the extractor leaves it: a status record and chunks.json in storage."""
    now = utcnow()
    original_key = f"tenants/acme/documents/{document_id}/original"
    status.create(DocumentRecord(document_id=document_id, tenant="acme", filename="terms.txt",
                                 content_type="text/plain", size_bytes=100, original_key=original_key,
                                 created_at=now, updated_at=now))
    msg = PipelineMessage(document_id=document_id, tenant="acme", version=1,
                          content_type="text/plain", original_key=original_key)
    chunks = [{"index": i, "text": text, "page": None} for i, text in enumerate(texts)]
    storage.put(msg.key("chunks.json"), json.dumps(chunks).encode())
    return msg.model_copy(update={"chunks_key": msg.key("chunks.json")})


def record_progress(monkeypatch, task, status: StatusStore, document_id: str) -> list[int]:
    """The document's progress as seen after each report the task makes."""
    seen: list[int] = []
    report = task.report

    def spy(msg, done, total, **counts):
        report(msg, done, total, **counts)
        seen.append(status.get(document_id).progress)

    monkeypatch.setattr(task, "report", spy)
    return seen


def test_embeds_chunks_into_a_matrix_in_storage_and_passes_only_keys_on(
        embed_document, status, storage, configure_embedder, monkeypatch):
    configure_embedder(DOCFLOW_EMBEDDING_BATCH_SIZE="2")
    msg = extracted_document(status, storage, CHUNK_TEXTS)
    progress = record_progress(monkeypatch, embed_document, status, msg.document_id)

    result = embed_document.apply(args=[msg.model_dump()]).get()

    returned = PipelineMessage.model_validate(result)
    # The model travels with the vectors' key: the indexer checks it against the index's.
    assert returned == msg.model_copy(update={"embeddings_key": msg.key("embeddings.npy"),
                                              "embedding_model": "hash:feature-hashing:64",
                                              "embedding_runtime": "numpy"})
    assert set(result) == set(PipelineMessage.model_fields)  # identifiers and keys, no vectors

    matrix = matrix_from_npy(storage.get(returned.embeddings_key))
    assert matrix.shape == (5, 64) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, HashingProvider(64).embed(CHUNK_TEXTS))  # rows in chunk order

    assert progress == sorted(progress) and len(progress) == 3  # 3 batches of at most 2
    assert all(40 <= p <= 80 for p in progress) and progress[-1] == 80
    record = status.get(msg.document_id)
    assert record.status is DocumentStatus.EMBEDDING and record.stage == "embed"


def test_a_rerun_overwrites_the_same_artifact(embed_document, status, storage):
    msg = extracted_document(status, storage, CHUNK_TEXTS)
    first = embed_document.apply(args=[msg.model_dump()]).get()
    second = embed_document.apply(args=[msg.model_dump()]).get()
    assert first == second
    assert status.get(msg.document_id).attempts == 2


def test_stops_when_the_document_is_cancelled_while_embedding(embed_document, status, storage,
                                                              configure_embedder, monkeypatch):
    configure_embedder(DOCFLOW_EMBEDDING_BATCH_SIZE="2")
    msg = extracted_document(status, storage, CHUNK_TEXTS)
    report = embed_document.report

    def cancel_after_first_batch(*args, **kwargs):
        report(*args, **kwargs)
        status.cancel(msg.document_id)

    monkeypatch.setattr(embed_document, "report", cancel_after_first_batch)
    result = embed_document.apply(args=[msg.model_dump()])

    assert result.state == "IGNORED"
    assert status.get(msg.document_id).status is DocumentStatus.CANCELLED
    with pytest.raises(Exception, match="artifact_missing"):
        storage.get(msg.key("embeddings.npy"))


def test_a_document_without_chunks_fails_at_once(embed_document, status, storage):
    msg = extracted_document(status, storage, [])
    result = embed_document.apply(args=[msg.model_dump()])
    assert result.failed()
    record = status.get(msg.document_id)
    assert record.status is DocumentStatus.FAILED
    assert record.error.code is ErrorCode.EMPTY_DOCUMENT and record.error.stage == "embed"


def test_an_unreachable_embeddings_service_fails_the_document_and_dead_letters_it(
        embed_document, status, storage, redis_client, configure_embedder):
    configure_embedder(DOCFLOW_EMBEDDER="openai", DOCFLOW_MAX_RETRIES="0",
                       DOCFLOW_OPENAI_BASE_URL="http://127.0.0.1:9/v1")  # discard port: refused
    msg = extracted_document(status, storage, CHUNK_TEXTS)

    result = embed_document.apply(args=[msg.model_dump()])

    assert result.failed()
    record = status.get(msg.document_id)
    assert record.status is DocumentStatus.FAILED
    assert record.error.code is ErrorCode.EMBEDDER_UNAVAILABLE
    [letter] = DeadLetterStore(redis_client).list()
    assert letter.task_name == Task.EMBED.value and letter.document_id == msg.document_id
    assert letter.args == [msg.model_dump()]  # replayable as is


def test_embed_query_returns_one_plain_vector_and_its_model(pipeline_env):
    answer = embed_query.apply(args=["late payment fee"]).get()
    assert answer.keys() == {"vector", "model_id", "runtime"}
    vector = answer["vector"]
    assert isinstance(vector, list) and len(vector) == 64
    assert all(isinstance(x, float) for x in vector)
    assert vector == HashingProvider(64).embed(["late payment fee"])[0].tolist()
    assert (answer["model_id"], answer["runtime"]) == ("hash:feature-hashing:64", "numpy")


def test_a_failing_query_is_neither_retried_nor_dead_lettered(configure_embedder, fake_embeddings_api,
                                                               redis_client):
    configure_embedder(DOCFLOW_EMBEDDER="openai", DOCFLOW_OPENAI_BASE_URL=fake_embeddings_api.url)
    fake_embeddings_api.fail_with = 503

    result = embed_query.apply(args=["late payment fee"])

    assert result.failed()
    assert len(fake_embeddings_api.requests) == 1
    assert DeadLetterStore(redis_client).count() == 0


def test_batches_hold_texts_of_about_one_length_and_rows_stay_in_chunk_order(
        embed_document, status, storage, configure_embedder, monkeypatch):
    # A model batch is padded to its longest text: cut in file order, the short chunks
    # here would each pay for a long neighbour; cut longest first, they share batches.
    configure_embedder(DOCFLOW_EMBEDDING_BATCH_SIZE="2")
    texts = ["short one", "a much longer chunk " * 20, "tiny", "another long chunk of text " * 15, "mid sized text " * 3]
    msg = extracted_document(status, storage, texts)
    from docflow.embedder.loaded_provider import get_provider

    provider = get_provider()
    batches: list[list[str]] = []
    embed = provider.embed
    monkeypatch.setattr(provider, "embed", lambda batch: batches.append(list(batch)) or embed(batch))

    result = embed_document.apply(args=[msg.model_dump()]).get()

    assert batches == [[texts[3], texts[1]], [texts[4], texts[0]], [texts[2]]]
    matrix = matrix_from_npy(storage.get(result["embeddings_key"]))
    np.testing.assert_allclose(matrix, HashingProvider(64).embed(texts))  # row i is chunk i


def test_longest_first_keeps_file_order_among_equal_lengths():
    from docflow.embedder.tasks import longest_first

    assert longest_first(["bb", "a", "cc", "ddd"]).tolist() == [3, 0, 2, 1]
