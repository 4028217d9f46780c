"""The `docflow` CLI against the real gateway over HTTP: output and exit codes."""

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docflow.cli.main import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, app
from docflow.devstack.processes import free_port
from docflow.shared.errors import ErrorCode
from docflow.shared.names import Queue
from docflow.shared.status import DocumentError, DocumentRecord, DocumentStatus, utcnow

# Wide enough that rich never wraps an id or a message in these assertions.
runner = CliRunner(env={"COLUMNS": "200", "DOCFLOW_URL": None, "DOCFLOW_API_KEY": None})


def docflow(served_gateway, *args: str, api_key: str | None = None):
    prefix = served_gateway.cli_args(api_key) if api_key else served_gateway.cli_args()
    return runner.invoke(app, [*prefix, *args])


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("The quick brown fox reads the docflow handbook.\n" * 5)
    return path


@pytest.fixture
def fake_pipeline(served_gateway):
    """Plays the workers: each queued document completes, or fails if its name starts with 'bad'."""
    store = served_gateway.status_store
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            records, _ = store.list("tenant-a", DocumentStatus.QUEUED, limit=100)
            for record in records:
                store.update(record.document_id, record.version, DocumentStatus.EXTRACTING, 30)
                time.sleep(0.1)
                if record.filename.startswith("bad"):
                    store.fail(record.document_id, record.version, DocumentError(
                        code=ErrorCode.CORRUPT_FILE, message="xref table is broken", stage="extract"))
                else:
                    store.complete(record.document_id, record.version, pages=2, chunks=5, vectors=5)
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


def upload(served_gateway, path: Path) -> str:
    result = docflow(served_gateway, "ingest", "--no-wait", str(path))
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# --- ingest -----------------------------------------------------------------------

def test_ingest_no_wait_prints_one_id_per_file(served_gateway, text_file, tmp_path):
    second = tmp_path / "more.md"
    second.write_text("# More\n\ntext\n")

    result = docflow(served_gateway, "ingest", "--no-wait", "--metadata", '{"source": "cli"}',
                     str(text_file), str(second))

    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    records = [served_gateway.status_store.get(i) for i in ids]
    assert [r.filename for r in records] == ["notes.txt", "more.md"]
    assert records[0].metadata == {"source": "cli"}
    assert served_gateway.redis.llen(Queue.EXTRACT.value) == 2


def test_ingest_waits_with_progress_and_prints_a_summary(served_gateway, fake_pipeline, text_file):
    result = docflow(served_gateway, "ingest", "--poll-interval", "0.05", "--timeout", "20", str(text_file))

    assert result.exit_code == 0, result.output
    assert "Ingest summary" in result.stdout
    assert "notes.txt" in result.stdout and "completed" in result.stdout
    [document] = served_gateway.status_store.list("tenant-a")[0]
    assert document.document_id in result.stdout


def test_ingest_exits_1_when_a_document_fails(served_gateway, fake_pipeline, text_file, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("this one will fail\n")

    result = docflow(served_gateway, "ingest", "--poll-interval", "0.05", "--timeout", "20",
                     str(text_file), str(bad))

    assert result.exit_code == EXIT_FAILED
    assert "completed" in result.stdout and "failed" in result.stdout
    assert "corrupt_file: xref table is broken" in result.stdout


def test_ingest_reports_a_rejected_file_with_the_servers_reason(served_gateway, text_file, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")

    result = docflow(served_gateway, "ingest", "--no-wait", str(empty), str(text_file))

    assert result.exit_code == EXIT_FAILED
    assert "empty.txt: rejected (HTTP 400): the file is empty" in result.stderr
    assert len(result.stdout.split()) == 1  # the good file still went in


def test_ingest_of_a_file_already_uploaded_follows_the_existing_document(served_gateway, text_file):
    first = upload(served_gateway, text_file)

    again = docflow(served_gateway, "ingest", "--no-wait", str(text_file))
    forced = docflow(served_gateway, "ingest", "--no-wait", "--on-duplicate", "new", str(text_file))

    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == first
    assert f"already uploaded, as document {first} (duplicate)" in again.stderr
    assert forced.exit_code == 0 and forced.stdout.strip() not in ("", first)
    assert "duplicate" not in forced.stderr


def test_the_clis_on_duplicate_choices_are_the_apis():
    from docflow.cli.ingest import OnDuplicate as CliOnDuplicate
    from docflow.gateway.duplicates import OnDuplicate
    assert [choice.value for choice in CliOnDuplicate] == [choice.value for choice in OnDuplicate]


def test_ingest_stops_waiting_at_the_timeout(served_gateway, text_file):
    result = docflow(served_gateway, "ingest", "--poll-interval", "0.05", "--timeout", "0.3", str(text_file))
    assert result.exit_code == EXIT_FAILED
    assert "timed out" in result.stdout


def test_ingest_rejects_metadata_that_is_not_an_object(served_gateway, text_file):
    result = docflow(served_gateway, "ingest", "--metadata", "[1, 2]", str(text_file))
    assert result.exit_code == EXIT_USAGE
    assert "must be a JSON object" in result.output


def test_ingest_of_a_missing_file_is_a_usage_error(served_gateway, tmp_path):
    result = docflow(served_gateway, "ingest", str(tmp_path / "nope.pdf"))
    assert result.exit_code == EXIT_USAGE
    assert "nope.pdf" in result.output


# --- status, list, delete, reprocess, cancel --------------------------------------

def test_status_shows_the_record(served_gateway, text_file):
    document_id = upload(served_gateway, text_file)

    table = docflow(served_gateway, "status", document_id)
    as_json = docflow(served_gateway, "status", document_id, "--json")

    assert table.exit_code == 0, table.output
    assert document_id in table.stdout and "notes.txt" in table.stdout and "queued" in table.stdout
    assert as_json.exit_code == 0
    record = json.loads(as_json.stdout)
    assert (record["document_id"], record["status"]) == (document_id, "queued")
    assert record["filename"] == "notes.txt"


def test_status_of_an_unknown_document_shows_the_servers_detail(served_gateway):
    result = docflow(served_gateway, "status", "f" * 32)
    assert result.exit_code == EXIT_FAILED
    assert f"HTTP 404): document {'f' * 32} not found" in result.stderr


def test_list_filters_by_status(served_gateway, text_file, tmp_path):
    kept = upload(served_gateway, text_file)
    other = tmp_path / "other.txt"
    other.write_text("Another document, to be cancelled.\n")
    cancelled = upload(served_gateway, other)
    assert docflow(served_gateway, "cancel", cancelled).exit_code == 0

    everything = docflow(served_gateway, "list")
    only_cancelled = docflow(served_gateway, "list", "--status", "cancelled", "--json")

    assert everything.exit_code == 0
    assert kept in everything.stdout and cancelled in everything.stdout
    assert "1-2 of 2" in everything.stdout
    assert [d["document_id"] for d in json.loads(only_cancelled.stdout)["documents"]] == [cancelled]


def test_list_with_an_invalid_status_shows_the_validation_error(served_gateway):
    result = docflow(served_gateway, "list", "--status", "done")
    assert result.exit_code == EXIT_FAILED
    assert "HTTP 422" in result.stderr and "query.status" in result.stderr


def test_delete_then_status_is_not_found(served_gateway, text_file):
    document_id = upload(served_gateway, text_file)

    deleted = docflow(served_gateway, "delete", document_id)

    assert deleted.exit_code == 0
    assert f"Deleted document {document_id}." in deleted.stdout
    assert docflow(served_gateway, "status", document_id).exit_code == EXIT_FAILED
    assert docflow(served_gateway, "delete", document_id).exit_code == EXIT_FAILED


def test_reprocess_starts_a_new_version(served_gateway, text_file):
    document_id = upload(served_gateway, text_file)

    result = docflow(served_gateway, "reprocess", document_id)

    assert result.exit_code == 0, result.output
    assert f"Reprocessing document {document_id}" in result.stdout
    assert served_gateway.status_store.get(document_id).version == 2


def test_cancel_twice_is_refused_the_second_time(served_gateway, text_file):
    document_id = upload(served_gateway, text_file)
    assert "cancelled" in docflow(served_gateway, "cancel", document_id).stdout
    again = docflow(served_gateway, "cancel", document_id)
    assert again.exit_code == EXIT_FAILED
    assert "HTTP 409" in again.stderr and "already cancelled" in again.stderr


def test_ids_cannot_reach_other_routes(served_gateway, text_file):
    upload(served_gateway, text_file)
    # Quoted into one path segment, this is a (missing) document id, not the list route.
    result = docflow(served_gateway, "status", "../documents")
    assert result.exit_code == EXIT_FAILED
    assert "HTTP 404" in result.stderr


# --- search -----------------------------------------------------------------------

def test_search_shows_results(served_gateway, monkeypatch):
    hits = [{"document_id": "a" * 32, "chunk_index": 2, "text": "the fox jumps", "score": 0.87, "page": 4}]
    # No workers here: stand in for the embedder and indexer behind the gateway.
    monkeypatch.setattr(served_gateway.services.pipeline, "search", lambda *args, **kwargs: hits)
    served_gateway.status_store.create(_record("a" * 32))

    table = docflow(served_gateway, "search", "fox", "--top-k", "3")
    as_json = docflow(served_gateway, "search", "fox", "--json")

    assert table.exit_code == 0, table.output
    assert "the fox jumps" in table.stdout and "0.870" in table.stdout and "a" * 32 in table.stdout
    assert json.loads(as_json.stdout)["results"][0]["chunk_index"] == 2


def test_search_passes_mode_and_filter_and_shows_file_names(served_gateway, monkeypatch):
    seen = []
    hits = [{"document_id": "a" * 32, "chunk_index": 0, "text": "the fox jumps", "score": 0.5, "page": None,
             "highlights": [[4, 7]]}]
    monkeypatch.setattr(served_gateway.services.pipeline, "search",
                        lambda query, timeout, **kwargs: seen.append(query) or hits)
    served_gateway.status_store.create(_record("a" * 32))

    result = docflow(served_gateway, "search", "fox", "--mode", "keyword", "--filter", '{"year": {"$gte": 2020}}')

    assert result.exit_code == 0, result.output
    assert (seen[0].mode.value, seen[0].filter) == ("keyword", {"year": {"$gte": 2020}})
    assert "fox.txt" in result.stdout and "the fox jumps" in result.stdout


def test_search_highlights_are_styled_never_read_as_markup():
    from rich.console import Console

    from docflow.cli.render import search_table
    console = Console(record=True, width=200, color_system="truecolor")
    console.print(search_table([{"document_id": "d", "filename": "[bold]x[/bold].txt", "text": "the fox [red]",
                                 "score": 1.0, "chunk_index": 0, "highlights": [[4, 7]]}]))
    text = console.export_text(clear=False)
    assert "[bold]x[/bold].txt" in text and "the fox [red]" in text
    assert "\x1b[1;33mfox" in console.export_text(styles=True)


def test_the_clis_search_modes_are_the_apis():
    from docflow.cli.render import SearchMode as CliSearchMode
    from docflow.shared.search import SearchMode
    assert [mode.value for mode in CliSearchMode] == [mode.value for mode in SearchMode]


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]"])
def test_search_refuses_a_filter_that_is_not_a_json_object(served_gateway, bad):
    result = docflow(served_gateway, "search", "fox", "--filter", bad)
    assert result.exit_code == EXIT_USAGE and "--filter" in result.output


def test_search_timeout_is_reported(served_gateway):
    result = docflow(served_gateway, "search", "fox")
    assert result.exit_code == EXIT_FAILED
    assert "HTTP 504" in result.stderr and "timed out" in result.stderr


def test_search_validates_top_k_locally(served_gateway):
    result = docflow(served_gateway, "search", "fox", "--top-k", "0")
    assert result.exit_code == EXIT_USAGE


def _record(document_id: str) -> DocumentRecord:
    now = utcnow()
    return DocumentRecord(document_id=document_id, tenant="tenant-a", filename="fox.txt",
                          content_type="text/plain", size_bytes=10, original_key="k",
                          created_at=now, updated_at=now)


# --- configuration and failures ---------------------------------------------------

def test_bad_api_key_is_reported_with_exit_1(served_gateway):
    result = docflow(served_gateway, "list", api_key="not-a-key")
    assert result.exit_code == EXIT_FAILED
    assert "Error: the gateway refused the request (HTTP 401): invalid API key" in result.stderr


def test_unreachable_gateway_is_reported_with_exit_3():
    result = runner.invoke(app, ["--url", f"http://127.0.0.1:{free_port()}", "--api-key", "k", "list"])
    assert result.exit_code == EXIT_UNREACHABLE
    assert "cannot reach the docflow gateway at http://127.0.0.1:" in result.stderr


def test_missing_api_key_is_a_usage_error(served_gateway):
    result = runner.invoke(app, ["--url", served_gateway.url, "list"])
    assert result.exit_code == EXIT_USAGE
    assert "no API key" in result.stderr


def test_url_and_key_come_from_the_environment(served_gateway, text_file):
    document_id = upload(served_gateway, text_file)
    result = runner.invoke(app, ["status", document_id, "--json"],
                           env={"DOCFLOW_URL": served_gateway.url, "DOCFLOW_API_KEY": "cli-key-5be1"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["document_id"] == document_id


def test_another_tenants_document_is_not_found(served_gateway, text_file):
    document_id = upload(served_gateway, text_file)
    result = docflow(served_gateway, "status", document_id, api_key="cli-key-other")
    assert result.exit_code == EXIT_FAILED
    assert "HTTP 404" in result.stderr
