"""The `docflow` command: ingest documents, follow them, search them.

Exit codes: 0 success; 1 the gateway refused a request or a document did not
complete; 2 bad usage; 3 the gateway could not be reached at all.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from docflow.cli import render
from docflow.cli.render import SearchMode
from docflow.cli.batches import DEFAULT_BATCH_SIZE, files_of, upload_batches
from docflow.cli.client import ApiError, GatewayClient, GatewayUnreachable
from docflow.cli.ingest import OnDuplicate, Outcome, follow, submit_all_urls, upload_all

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
DEFAULT_URL = "http://127.0.0.1:8000"

app = typer.Typer(
    help="docflow: ingest documents, follow their processing, search them.",
    no_args_is_help=True,
    add_completion=False,
)


@dataclass
class Context:
    url: str
    api_key: str | None
    out: Console
    err: Console

    @contextmanager
    def client(self) -> Iterator[GatewayClient]:
        """A client, and the CLI's single translation of failures into messages and exit codes."""
        if not self.api_key:
            self.fail("no API key: pass --api-key or set DOCFLOW_API_KEY", EXIT_USAGE)
        try:
            with GatewayClient(self.url, self.api_key) as client:
                yield client
        except ApiError as exc:
            self.fail(f"the gateway refused the request (HTTP {exc.status_code}): {exc.detail}", EXIT_FAILED)
        except GatewayUnreachable as exc:
            self.fail(str(exc), EXIT_UNREACHABLE)

    def fail(self, message: str, code: int) -> None:
        self.err.print(f"Error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code)


def _context(ctx: typer.Context) -> Context:
    return ctx.obj


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="DOCFLOW_URL", help="Gateway base URL")] = DEFAULT_URL,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="DOCFLOW_API_KEY",
                                                 help="API key (Bearer token)", show_default=False)] = None,
) -> None:
    ctx.obj = Context(url=url, api_key=api_key, out=Console(), err=Console(stderr=True))


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(exists=True, readable=True,
                                                help="Documents to upload, or folders of them (every "
                                                     "file under a folder, hidden ones left out)")],
    metadata: Annotated[str | None, typer.Option(help="JSON object stored with every document")] = None,
    on_duplicate: Annotated[OnDuplicate | None, typer.Option(
        help="A file already uploaded: skip (follow the existing document, the server's default), "
             "new (another document) or reprocess (a new version of it)")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print document ids and return at once")] = False,
    poll_interval: Annotated[float, typer.Option(
        min=0.05, help="Seconds between status polls, if the gateway's event stream is unavailable")] = 1.0,
    timeout: Annotated[float | None,
                       typer.Option(min=0, help="Give up waiting after this many seconds")] = None,
    batch: Annotated[bool, typer.Option(
        "--batch", help="Send the files many to a request (POST /v1/batches) instead of one by one")] = False,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Files per request with --batch (at most the gateway's DOCFLOW_BATCH_MAX_FILES)",
    )] = DEFAULT_BATCH_SIZE,
) -> None:
    """Upload documents, then show their progress until each completes or fails."""
    context = _context(ctx)
    parsed_metadata = _parse_metadata(metadata)
    paths = files_of(files)
    if not paths:
        context.fail("no files to upload (the folders given hold none)", EXIT_USAGE)
    choice = on_duplicate.value if on_duplicate else None
    with context.client() as client:
        if batch:
            outcomes = upload_batches(client, paths, parsed_metadata, context.err, choice, batch_size)
        else:
            outcomes = upload_all(client, paths, parsed_metadata, context.err, choice)
        _follow_to_the_end(context, client, outcomes, no_wait, poll_interval, timeout)


@app.command("ingest-url")
def ingest_url(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="http(s) addresses of documents or web pages; the "
                                                   "extractor fetches each (HTML pages reduced to their main text)")],
    metadata: Annotated[str | None, typer.Option(help="JSON object stored with every document")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print document ids and return at once")] = False,
    poll_interval: Annotated[float, typer.Option(
        min=0.05, help="Seconds between status polls, if the gateway's event stream is unavailable")] = 1.0,
    timeout: Annotated[float | None,
                       typer.Option(min=0, help="Give up waiting after this many seconds")] = None,
) -> None:
    """Hand in documents by URL, then show their progress until each completes or fails."""
    context = _context(ctx)
    parsed_metadata = _parse_metadata(metadata)
    with context.client() as client:
        outcomes = submit_all_urls(client, urls, parsed_metadata, context.err)
        _follow_to_the_end(context, client, outcomes, no_wait, poll_interval, timeout)


def _follow_to_the_end(context: Context, client: GatewayClient, outcomes: list[Outcome], no_wait: bool,
                       poll_interval: float, timeout: float | None) -> None:
    """Print the ids (--no-wait), or follow every document to a final status and print the
    summary; exit EXIT_FAILED if any was refused or (followed) did not complete."""
    if no_wait:
        for outcome in outcomes:
            if outcome.document_id:
                typer.echo(outcome.document_id)
    else:
        follow(client, outcomes, context.err, poll_interval, timeout)
        context.out.print(render.ingest_summary_table([o.as_row() for o in outcomes]))
    if not all(o.document_id for o in outcomes) or (not no_wait and not all(o.succeeded for o in outcomes)):
        raise typer.Exit(EXIT_FAILED)


def _parse_json_object(raw: str | None, option: str, example: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"must be a JSON object, e.g. '{example}'", param_hint=option)
    return value


def _parse_metadata(raw: str | None) -> dict[str, Any] | None:
    return _parse_json_object(raw, "--metadata", '{"source": "crm"}')


@app.command()
def status(
    ctx: typer.Context,
    document_id: Annotated[str, typer.Argument(help="Document id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON record")] = False,
) -> None:
    """Show one document's status, progress and counts."""
    context = _context(ctx)
    with context.client() as client:
        document = client.document(document_id)
    if as_json:
        _print_json(document)
    else:
        context.out.print(render.document_table(document))


@app.command("list")
def list_documents(
    ctx: typer.Context,
    status_filter: Annotated[str | None,
                             typer.Option("--status", help="Only documents in this status")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Page size")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Documents to skip")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON page")] = False,
) -> None:
    """List your documents, newest first."""
    context = _context(ctx)
    with context.client() as client:
        page = client.documents(status_filter, limit, offset)
    if as_json:
        _print_json(page)
    else:
        context.out.print(render.documents_table(page))


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What to look for")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100, help="Number of results")] = 5,
    mode: Annotated[SearchMode, typer.Option(
        help="hybrid: words and meaning fused; vector: by meaning; keyword: by the words")] = SearchMode.HYBRID,
    filter_: Annotated[str | None, typer.Option(
        "--filter", help='Metadata filter (Pinecone\'s dialect), e.g. \'{"year": {"$gte": 2020}}\'')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON results")] = False,
) -> None:
    """Search your documents; matched words are highlighted."""
    context = _context(ctx)
    parsed_filter = _parse_json_object(filter_, "--filter", '{"department": "legal"}')
    with context.client() as client:
        results = client.search(query, top_k, mode.value, parsed_filter)
    if as_json:
        _print_json(results)
    else:
        context.out.print(render.search_table(results.get("results", [])))


@app.command()
def delete(ctx: typer.Context, document_id: Annotated[str, typer.Argument(help="Document id")]) -> None:
    """Delete a document, its stored files and its vectors."""
    context = _context(ctx)
    with context.client() as client:
        client.delete(document_id)
    context.out.print(f"Deleted document {document_id}.", highlight=False)


@app.command()
def reprocess(ctx: typer.Context, document_id: Annotated[str, typer.Argument(help="Document id")]) -> None:
    """Run a document through the pipeline again (a new version)."""
    context = _context(ctx)
    with context.client() as client:
        accepted = client.reprocess(document_id)
    context.out.print(f"Reprocessing document {document_id} (task {accepted['task_id']}).", highlight=False)


@app.command()
def cancel(ctx: typer.Context, document_id: Annotated[str, typer.Argument(help="Document id")]) -> None:
    """Stop processing a document that is not final yet."""
    context = _context(ctx)
    with context.client() as client:
        document = client.cancel(document_id)
    context.out.print(f"Document {document_id} is now {document['status']}.", highlight=False)
