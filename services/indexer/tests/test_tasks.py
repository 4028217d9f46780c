"""The indexer's tasks end to end: real Redis (status store), local storage, LanceDB in tmp_path."""

import io
import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from docflow.indexer import tasks, worker
from docflow.indexer.stores.lancedb import LanceDBStore, table_name
from docflow.indexer.tasks import delete_document, index_document, keeps_vectors, search
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import ErrorCode, TransientError
from docflow.shared.messages import PipelineMessage
from docflow.shared.settings import get_settings
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

TENANT = "acme"
DIMENSION = 8


def _forget_cached_resources() -> None:
    """Each test brings its own settings; tasks and the worker cache theirs per process."""
    get_settings.cache_clear()
    worker.reset_store()
    for task in (index_document, search, delete_document):
        task.reset_resources()


@pytest.fixture
def env(tmp_path: Path, redis_server, redis_client, monkeypatch):
    monkeypatch.setenv("DOCFLOW_REDIS_URL", redis_server.url)
    monkeypatch.setenv("DOCFLOW_STORAGE_BACKEND", "local")
    monkeypatch.setenv("DOCFLOW_STORAGE_PATH", str(tmp_path / "storage"))
    monkeypatch.setenv("DOCFLOW_VECTOR_STORE", "lancedb")
    monkeypatch.setenv("DOCFLOW_LANCEDB_URI", str(tmp_path / "lancedb"))
    monkeypatch.setenv("DOCFLOW_UPSERT_BATCH_SIZE", "2")  # several batches, so progress moves
    _forget_cached_resources()
    yield tmp_path
    _forget_cached_resources()


@pytest.fixture
def status(redis_client) -> StatusStore:
    return StatusStore(redis_client)


@pytest.fixture
def storage(env) -> LocalStorage:
    return LocalStorage(env / "storage")


@pytest.fixture
def vectors(env) -> LanceDBStore:
    """A second handle on the worker's LanceDB folder, to look at what the tasks wrote."""
    return LanceDBStore(str(env / "lancedb"))


def create_document(status: StatusStore) -> str:
    document_id = uuid.uuid4().hex
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename="report.pdf",
                                 content_type="application/pdf", size_bytes=1234,
                                 original_key=f"tenants/{TENANT}/documents/{document_id}/original",
                                 created_at=now, updated_at=now))
    return document_id


def put_artifacts(storage: LocalStorage, document_id: str, version: int, texts: list[str],
                  embeddings: np.ndarray | None = None) -> dict:
    """Store chunks.json and embeddings.npy as the extractor and embedder would; return the message."""
    msg = PipelineMessage(document_id=document_id, tenant=TENANT, version=version,
                          content_type="application/pdf",
                          original_key=f"tenants/{TENANT}/documents/{document_id}/original")
    msg = msg.model_copy(update={"chunks_key": msg.key("chunks.json"),
                                 "embeddings_key": msg.key("embeddings.npy")})
    chunks = [{"index": i, "text": text, "page": i + 1} for i, text in enumerate(texts)]
    storage.put(msg.chunks_key, json.dumps(chunks).encode())
    if embeddings is None:
        embeddings = np.random.default_rng(version).normal(size=(len(texts), DIMENSION)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, embeddings, allow_pickle=False)
    storage.put(msg.embeddings_key, buffer.getvalue())
    return msg.model_dump()


def vector_query(tenant: str, limit: int) -> dict:
    """A search task's query message for a vector-only search (the vector is the task's first argument)."""
    return {"tenant": tenant, "text": "", "mode": "vector", "limit": limit}


def load_matrix(storage: LocalStorage, message: dict) -> np.ndarray:
    return np.load(io.BytesIO(storage.get(message["embeddings_key"])))


def test_indexing_writes_each_chunk_once_and_completes_the_document(env, status, storage, vectors):
    document_id = create_document(status)
    texts = [f"chunk number {i}" for i in range(5)]
    message = put_artifacts(storage, document_id, 1, texts)

    result = index_document.apply(args=[message]).get()
    again = index_document.apply(args=[message])  # a redelivery of the same message

    assert result == {"document_id": document_id, "version": 1, "vectors": 5}
    assert again.state == "IGNORED"  # already completed: the run is dropped, its vectors kept
    assert vectors.count(TENANT, document_id) == 5
    record = status.get(document_id)
    assert record.status is DocumentStatus.COMPLETED
    assert record.progress == 100
    assert record.vectors == 5
    assert record.completed_at is not None


def test_twin_runs_of_one_message_overwrite_each_other(env, status, storage, vectors, monkeypatch):
    """At-least-once delivery: a second run may start before the first one completes."""
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, ["a", "b", "c"])
    real_task = index_document._get_current_object()
    with monkeypatch.context() as patch:
        patch.setattr(type(real_task.status), "complete", lambda *args, **kwargs: True)
        index_document.apply(args=[message]).get()  # the first twin, stopped before completing
    index_document.apply(args=[message]).get()

    assert vectors.count(TENANT, document_id) == 3
    assert status.get(document_id).status is DocumentStatus.COMPLETED


def test_search_finds_the_indexed_chunks(env, status, storage):
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, ["alpha", "beta", "gamma"])
    index_document.apply(args=[message]).get()
    query = load_matrix(storage, message)[1].tolist()

    hits = search.apply(args=[query, vector_query(TENANT, 2)]).get()

    assert len(hits) == 2
    assert hits[0] == {"document_id": document_id, "chunk_index": 1, "text": "beta",
                       "score": pytest.approx(1.0, abs=1e-5), "page": 2, "highlights": []}
    assert search.apply(args=[query, vector_query("globex", 2)]).get() == []


def test_reprocessing_replaces_the_old_versions_vectors(env, status, storage, vectors):
    document_id = create_document(status)
    index_document.apply(args=[put_artifacts(storage, document_id, 1, ["old"] * 5)]).get()

    version = status.restart(document_id, task_id="reprocess")
    assert version == 2
    v2 = put_artifacts(storage, document_id, 2, ["new one", "new two", "new three"])
    index_document.apply(args=[v2]).get()

    assert vectors.count(TENANT, document_id) == 3
    texts = {hit.text for hit in vectors.search(TENANT, load_matrix(storage, v2)[0].tolist(), 10)}
    assert texts == {"new one", "new two", "new three"}
    record = status.get(document_id)
    assert (record.status, record.version, record.vectors) == (DocumentStatus.COMPLETED, 2, 3)


def test_a_run_made_stale_while_indexing_leaves_nothing_behind(env, status, storage, vectors, monkeypatch):
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, [f"c{i}" for i in range(6)])
    real_task = index_document._get_current_object()
    report = real_task.report

    def reprocess_after_first_batch(msg, done, total, **counts):
        report(msg, done, total, **counts)
        if done == 2:
            status.restart(document_id, task_id="reprocess")

    monkeypatch.setattr(real_task, "report", reprocess_after_first_batch)
    index_document.apply(args=[message]).get()

    assert vectors.count(TENANT, document_id) == 0
    record = status.get(document_id)
    assert (record.version, record.status) == (2, DocumentStatus.QUEUED)


def test_a_redelivered_stale_run_removes_what_it_wrote(env, status, storage, vectors):
    """A run killed after upserting is redelivered; by then the document was reprocessed."""
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, ["a", "b"])
    worker.get_store().upsert(TENANT, tasks.build_records(
        PipelineMessage.model_validate(message), tasks.load_chunks(storage.get(message["chunks_key"])),
        load_matrix(storage, message)))
    status.restart(document_id, task_id="reprocess")

    assert index_document.apply(args=[message]).state == "IGNORED"
    assert vectors.count(TENANT, document_id) == 0


def test_a_deleted_document_is_not_indexed(env, status, storage, vectors):
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, ["a", "b"])
    status.delete(document_id, TENANT)

    assert index_document.apply(args=[message]).state == "IGNORED"
    assert vectors.count(TENANT, document_id) == 0


def test_embeddings_that_do_not_match_the_chunks_fail_the_document(env, status, storage, vectors):
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, ["a", "b", "c"],
                            embeddings=np.zeros((2, DIMENSION), dtype=np.float32))

    result = index_document.apply(args=[message])

    assert result.state == "FAILURE"
    record = status.get(document_id)
    assert record.status is DocumentStatus.FAILED
    assert record.error.code is ErrorCode.INTERNAL_ERROR
    assert record.error.stage == "index"
    assert vectors.count(TENANT, document_id) == 0


def test_missing_artifacts_fail_the_document(env, status, storage):
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, ["a"])
    storage.delete_prefix(message["embeddings_key"])

    assert index_document.apply(args=[message]).state == "FAILURE"
    assert status.get(document_id).status is DocumentStatus.FAILED


def test_a_permanent_error_keeps_its_code_and_is_not_dead_lettered(env, status, storage, redis_client):
    document_id = create_document(status)
    message = put_artifacts(storage, document_id, 1, ["a"])
    storage.delete_prefix(message["embeddings_key"])

    index_document.apply(args=[message])

    assert status.get(document_id).error.code is ErrorCode.ARTIFACT_MISSING
    assert DeadLetterStore(redis_client).count() == 0  # the input is at fault: nothing to replay


def test_a_failed_search_goes_back_to_its_caller_without_a_dead_letter(env, redis_client, monkeypatch):
    class Unreachable:
        def search(self, *args, **kwargs):
            raise TransientError(ErrorCode.VECTOR_STORE_UNAVAILABLE, "down")

    monkeypatch.setattr(worker, "_store", Unreachable())
    result = search.apply(args=[[1.0] * DIMENSION, vector_query(TENANT, 3)])

    assert result.state == "FAILURE"
    assert isinstance(result.result, TransientError)
    assert DeadLetterStore(redis_client).count() == 0


def test_a_failed_vector_delete_is_dead_lettered_for_replay(env, redis_client, monkeypatch):
    class Unreachable:
        def delete_document(self, *args, **kwargs):
            raise TransientError(ErrorCode.VECTOR_STORE_UNAVAILABLE, "down")

    monkeypatch.setenv("DOCFLOW_MAX_RETRIES", "0")  # dead-letter on the first failure
    _forget_cached_resources()
    monkeypatch.setattr(worker, "_store", Unreachable())

    assert delete_document.apply(args=[TENANT, "doc1"]).state == "FAILURE"
    (letter,) = DeadLetterStore(redis_client).list()
    assert (letter.task_name, letter.args, letter.error_code) == (
        "docflow.index.delete_document", [TENANT, "doc1"], "vector_store_unavailable")


def test_delete_task_removes_every_version(env, status, storage, vectors):
    document_id = create_document(status)
    index_document.apply(args=[put_artifacts(storage, document_id, 1, ["a", "b", "c"])]).get()

    assert delete_document.apply(args=[TENANT, document_id]).get() == 3
    assert vectors.count(TENANT, document_id) == 0
    assert delete_document.apply(args=[TENANT, document_id]).get() == 0


def test_keeps_vectors_only_for_the_live_version(status):
    now = utcnow()
    record = DocumentRecord(document_id="d", tenant=TENANT, version=2, filename="f",
                            content_type="text/plain", size_bytes=1, original_key="k",
                            created_at=now, updated_at=now)
    assert keeps_vectors(record.model_copy(update={"status": DocumentStatus.INDEXING}), 2)
    assert keeps_vectors(record.model_copy(update={"status": DocumentStatus.COMPLETED}), 2)
    assert not keeps_vectors(record.model_copy(update={"status": DocumentStatus.INDEXING}), 1)
    assert not keeps_vectors(record.model_copy(update={"status": DocumentStatus.CANCELLED}), 2)
    assert not keeps_vectors(record.model_copy(update={"status": DocumentStatus.FAILED}), 2)
    assert not keeps_vectors(None, 2)


def test_the_store_is_opened_once_per_process(env):
    assert worker.get_store() is worker.get_store()


def test_a_store_that_cannot_open_at_process_start_does_not_kill_the_process(env, monkeypatch):
    monkeypatch.setenv("DOCFLOW_VECTOR_STORE", "pinecone")  # and no API key
    get_settings.cache_clear()
    worker.open_store()  # logs, does not raise
    with pytest.raises(Exception):
        worker.get_store()


def test_non_finite_embeddings_fail_the_document(env, status, storage, vectors):
    document_id = create_document(status)
    embeddings = np.ones((2, DIMENSION), dtype=np.float32)
    embeddings[1, 3] = np.nan
    message = put_artifacts(storage, document_id, 1, ["a", "b"], embeddings=embeddings)

    assert index_document.apply(args=[message]).state == "FAILURE"
    assert status.get(document_id).error.code is ErrorCode.INTERNAL_ERROR
    assert vectors.count(TENANT, document_id) == 0


def test_results_are_stored_in_one_round_trip():
    from docflow.shared.celery_app import WorkerResultBackend

    assert type(worker.app.backend) is WorkerResultBackend


# --- One embedding model per tenant index ------------------------------------------

MODEL_A, MODEL_B = "minilm:all-MiniLM-L6-v2:8", "openai:text-embedding-3-small:8"  # same width


def embedded_with(message: dict, model: str, runtime: str) -> dict:
    return {**message, "embedding_model": model, "embedding_runtime": runtime}


def test_a_document_of_another_model_than_the_tenants_index_is_refused(env, status, storage, vectors,
                                                                        redis_client):
    first = create_document(status)
    index_document.apply(args=[embedded_with(put_artifacts(storage, first, 1, ["a", "b"]), MODEL_A, "onnx-int8")]).get()
    record = status.get(first)
    assert (record.embedding_model, record.embedding_runtime) == (MODEL_A, "onnx-int8")
    assert vectors.embedding_model(TENANT) == MODEL_A  # recorded by the table itself

    other = create_document(status)
    result = index_document.apply(args=[embedded_with(put_artifacts(storage, other, 1, ["c"]), MODEL_B, "http")])

    assert result.state == "FAILURE"
    record = status.get(other)
    assert record.status is DocumentStatus.FAILED and record.error.code is ErrorCode.EMBEDDING_MODEL_MISMATCH
    assert MODEL_A in record.error.message and MODEL_B in record.error.message
    assert "re-embed" in record.error.message.lower()
    assert vectors.count(TENANT, other) == 0
    assert DeadLetterStore(redis_client).count() == 0  # permanent: a retry embeds with the same model

    # The same model from another runtime (torch on a GPU, say) shares the index.
    same = create_document(status)
    index_document.apply(args=[embedded_with(put_artifacts(storage, same, 1, ["d"]), MODEL_A, "torch")]).get()
    assert status.get(same).status is DocumentStatus.COMPLETED
    assert status.get(same).embedding_runtime == "torch"
    assert vectors.count(TENANT, same) == 1
    # Another tenant's index is its own: it takes the other model.
    globex = {**embedded_with(put_artifacts(storage, create_document(status), 1, ["e"]), MODEL_B, "http"),
              "tenant": "globex"}
    assert index_document.apply(args=[globex]).get()["vectors"] == 1
    assert vectors.embedding_model("globex") == MODEL_B


def test_a_query_of_another_model_than_the_tenants_index_is_refused(env, status, storage):
    document_id = create_document(status)
    message = embedded_with(put_artifacts(storage, document_id, 1, ["alpha", "beta"]), MODEL_A, "onnx-int8")
    index_document.apply(args=[message]).get()
    vector = load_matrix(storage, message)[1].tolist()

    refused = search.apply(args=[{"vector": vector, "model_id": MODEL_B, "runtime": "http"},
                                 vector_query(TENANT, 2)])
    assert refused.state == "FAILURE"
    assert type(refused.result).__name__ == "EmbeddingModelMismatch"
    assert MODEL_A in str(refused.result) and MODEL_B in str(refused.result)
    hybrid = {**vector_query(TENANT, 2), "text": "beta", "mode": "hybrid"}
    assert search.apply(args=[{"vector": vector, "model_id": MODEL_B}, hybrid]).state == "FAILURE"

    # The index's own model, from any runtime; keyword search has no vector to check; a
    # bare vector (an embedder from before models were recorded) is not checked.
    for runtime in ("onnx-int8", "torch"):
        hits = search.apply(args=[{"vector": vector, "model_id": MODEL_A, "runtime": runtime},
                                  vector_query(TENANT, 1)]).get()
        assert [hit["text"] for hit in hits] == ["beta"]
    keyword = {**vector_query(TENANT, 2), "text": "beta", "mode": "keyword"}
    assert [hit["text"] for hit in search.apply(args=[None, keyword]).get()] == ["beta"]
    assert [hit["text"] for hit in search.apply(args=[vector, vector_query(TENANT, 1)]).get()] == ["beta"]


def test_documents_indexed_by_threads_at_once_share_one_commit(env, status, storage, vectors):
    """The document worker runs index tasks in threads (names.pool_of_role); each task
    counts as a writer of the store's group commit for as long as it runs, so the
    appends of tasks running together wait for each other and land as one commit. (The
    leader's wait is raised here, so a slow machine cannot split the group.)"""
    first = create_document(status)
    index_document.apply(args=[put_artifacts(storage, first, 1, ["the table exists"])]).get()
    worker.get_store().appends.max_wait_seconds = 30
    version_before = vectors.db.open_table(table_name(TENANT)).version

    documents = [create_document(status) for _ in range(8)]
    messages = [put_artifacts(storage, d, 1, [f"document {n}", "second chunk"]) for n, d in enumerate(documents)]
    start_together = threading.Barrier(len(messages))
    results = {}

    def index(message: dict) -> None:
        start_together.wait()
        results[message["document_id"]] = index_document.apply(args=[message]).get()

    threads = [threading.Thread(target=index, args=(message,)) for message in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(results) == sorted(documents)
    assert all(status.get(d).status is DocumentStatus.COMPLETED and vectors.count(TENANT, d) == 2 for d in documents)
    assert vectors.db.open_table(table_name(TENANT)).version == version_before + 1
