"""`docflow ingest-url`: URLs handed to the real gateway over HTTP as JSON submissions
(POST /v1/documents `{url, metadata}`); no worker runs here, so the documents stay
queued and the command is run with --no-wait, or its refusals are checked."""

from typer.testing import CliRunner

from docflow.cli.main import EXIT_FAILED, app

runner = CliRunner(env={"COLUMNS": "200", "DOCFLOW_URL": None, "DOCFLOW_API_KEY": None})


def docflow(served_gateway, *args: str):
    return runner.invoke(app, [*served_gateway.cli_args(), *args])


def test_each_url_becomes_a_queued_document_with_its_source_url_and_metadata(served_gateway):
    urls = ["https://example.org/report.html", "https://example.org/paper.pdf"]

    result = docflow(served_gateway, "ingest-url", "--no-wait", "--metadata", '{"source": "web"}', *urls)

    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert len(ids) == 2
    records = [served_gateway.status_store.get(document_id) for document_id in ids]
    assert [record.source_url for record in records] == urls
    assert all(record.tenant == "tenant-a" for record in records)
    assert [record.metadata for record in records] == [{"source": "web"}] * 2


def test_a_refused_url_is_reported_and_the_others_still_go(served_gateway):
    result = docflow(served_gateway, "ingest-url", "--no-wait", "ftp://example.org/file.txt",
                     "https://example.org/ok.html")

    assert result.exit_code == EXIT_FAILED
    ids = result.stdout.split()
    assert len(ids) == 1
    assert served_gateway.status_store.get(ids[0]).source_url == "https://example.org/ok.html"
    assert "ftp://example.org/file.txt" in result.stderr and "HTTP 422" in result.stderr
