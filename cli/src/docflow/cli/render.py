"""Rich tables for the CLI's human-readable output (--json gives the raw API data)."""

from enum import StrEnum
from typing import Any

from rich.table import Table
from rich.text import Text

from docflow.cli.statuses import CANCELLED, COMPLETED, FAILED

STATUS_STYLES = {COMPLETED: "green", FAILED: "red", CANCELLED: "yellow"}
DOCUMENT_FIELDS = ("document_id", "filename", "status", "progress", "content_type", "size_bytes",
                   "pages", "chunks", "vectors", "stage", "attempts", "version", "task_id",
                   "created_at", "updated_at", "completed_at")


def _show(value: Any) -> str:
    return "" if value is None else str(value)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, "cyan"))


def error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    stage = f" during {error['stage']}" if error.get("stage") else ""
    return f"{error.get('code')}{stage}: {error.get('message')}"


def document_table(document: dict[str, Any]) -> Table:
    table = Table(show_header=False, title=f"Document {document.get('document_id', '')}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name in DOCUMENT_FIELDS:
        value = document.get(name)
        table.add_row(name, status_text(value) if name == "status" else _show(value))
    if document.get("metadata"):
        table.add_row("metadata", _show(document["metadata"]))
    if document.get("error"):
        table.add_row("error", Text(error_text(document["error"]), style="red"))
    return table


def documents_table(page: dict[str, Any]) -> Table:
    documents = page.get("documents", [])
    first = page.get("offset", 0) + 1
    caption = (f"{first}-{first + len(documents) - 1} of {page.get('total', 0)}" if documents
               else f"none of {page.get('total', 0)}")
    table = Table(caption=caption)
    table.add_column("document", no_wrap=True)
    table.add_column("filename", overflow="fold")
    table.add_column("status")
    table.add_column("progress", justify="right")
    table.add_column("created", overflow="fold")
    for document in documents:
        table.add_row(document["document_id"], document.get("filename", ""), status_text(document["status"]),
                      f"{document.get('progress', 0)}%", _show(document.get("created_at")))
    return table


class SearchMode(StrEnum):
    """POST /v1/search's modes (the CLI stays free of the shared package; a test pins
    these to docflow.shared.search.SearchMode)."""

    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


def highlighted(text: str, spans: list[list[int]] | None) -> Text:
    """The chunk's text with the matched words in bold; never read as markup."""
    shown = Text(text)
    for start, end in spans or []:
        shown.stylize("bold yellow", start, end)
    return shown


def search_table(results: list[dict[str, Any]]) -> Table:
    table = Table(caption=f"{len(results)} result(s)")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("file", overflow="fold")
    table.add_column("document", no_wrap=True)
    table.add_column("page", justify="right")
    table.add_column("chunk", justify="right")
    table.add_column("text", overflow="fold")
    for rank, hit in enumerate(results, start=1):
        table.add_row(str(rank), f"{hit.get('score', 0):.3f}", Text(hit.get("filename", "")),
                      hit.get("document_id", ""), _show(hit.get("page")), _show(hit.get("chunk_index")),
                      highlighted(hit.get("text", ""), hit.get("highlights")))
    return table


def ingest_summary_table(outcomes: list[dict[str, Any]]) -> Table:
    table = Table(title="Ingest summary")
    table.add_column("file", overflow="fold")
    table.add_column("document", no_wrap=True)
    table.add_column("status")
    table.add_column("pages", justify="right")
    table.add_column("chunks", justify="right")
    table.add_column("error", overflow="fold")
    for outcome in outcomes:
        table.add_row(outcome["file"], outcome.get("document_id") or "", status_text(outcome["status"]),
                      _show(outcome.get("pages")), _show(outcome.get("chunks")), outcome.get("error") or "")
    return table
