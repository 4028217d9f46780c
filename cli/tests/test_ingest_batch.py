"""`docflow ingest DIR --batch`: the files go N to a request (POST /v1/batches) to the real
gateway over HTTP; each file is judged on its own."""

import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docflow.cli.batches import files_of
from docflow.cli.main import EXIT_FAILED, app
from docflow.shared.names import Queue
from docflow.shared.status import DocumentStatus

runner = CliRunner(env={"COLUMNS": "200", "DOCFLOW_URL": None, "DOCFLOW_API_KEY": None})


def docflow(served_gateway, *args: str):
    return runner.invoke(app, [*served_gateway.cli_args(), *args])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for n in range(4):
        (folder / f"{n}.txt").write_text(f"Document {n}: the quick brown fox reads the docflow handbook.\n" * 5)
    (folder / "sub" / "deep.md").write_text("# Deep\n\nA file in a subfolder.\n")
    (folder / ".hidden" / "secret.txt").write_text("not to be sent\n")
    (folder / ".dotfile").write_text("not to be sent either\n")
    return folder


def batches_made(served_gateway) -> int:
    return len(list(served_gateway.redis.scan_iter(match="docflow:tenant:tenant-a:batch:*")))


def test_a_folder_is_every_file_under_it_in_name_order(folder):
    assert [p.relative_to(folder).as_posix() for p in files_of([folder])] == [
        "0.txt", "1.txt", "2.txt", "3.txt", "sub/deep.md"]


def test_ingest_batch_sends_n_files_to_a_request(served_gateway, folder):
    result = docflow(served_gateway, "ingest", "--batch", "--batch-size", "2", "--no-wait",
                     "--metadata", '{"source": "batch"}', str(folder))

    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert len(ids) == 5 and len(set(ids)) == 5
    assert batches_made(served_gateway) == 3, "5 files, 2 to a request"
    records = [served_gateway.status_store.get(i) for i in ids]
    assert [r.filename for r in records] == ["0.txt", "1.txt", "2.txt", "3.txt", "deep.md"]
    assert all(r.metadata == {"source": "batch"} for r in records)
    # Each enqueued: on the document queue, or past the tenant's fair-share limit the bulk lane.
    redis = served_gateway.redis
    assert redis.llen(Queue.EXTRACT.value) + redis.llen(Queue.BULK_EXTRACT.value) == 5


def test_a_refused_file_fails_alone(served_gateway, folder):
    (folder / "1.txt").write_bytes(b"")

    result = docflow(served_gateway, "ingest", "--batch", "--no-wait", str(folder))

    assert result.exit_code == EXIT_FAILED
    assert "1.txt: rejected (empty_file): the file is empty" in result.stderr
    assert len(result.stdout.split()) == 4  # the others of its batch went in
    assert batches_made(served_gateway) == 1


def test_files_already_uploaded_are_followed_as_the_existing_documents(served_gateway, folder):
    first = docflow(served_gateway, "ingest", "--batch", "--no-wait", str(folder))
    again = docflow(served_gateway, "ingest", "--batch", "--no-wait", str(folder))

    assert again.exit_code == 0, again.output
    assert again.stdout.split() == first.stdout.split()
    assert again.stderr.count("(duplicate)") == 5


def test_ingest_batch_waits_until_every_document_is_final(served_gateway, folder):
    store = served_gateway.status_store
    stop = threading.Event()

    def pipeline() -> None:  # plays the workers
        while not stop.is_set():
            for record in store.list("tenant-a", DocumentStatus.QUEUED, limit=100)[0]:
                store.complete(record.document_id, record.version, pages=1, chunks=1, vectors=1)
            time.sleep(0.02)

    worker = threading.Thread(target=pipeline, daemon=True)
    worker.start()
    try:
        result = docflow(served_gateway, "ingest", "--batch", "--batch-size", "3", "--poll-interval", "0.05",
                         "--timeout", "20", str(folder))
    finally:
        stop.set()
        worker.join(5)

    assert result.exit_code == 0, result.output
    assert "Ingest summary" in result.stdout and result.stdout.count("completed") >= 5
