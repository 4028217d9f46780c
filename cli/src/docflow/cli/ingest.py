"""`docflow ingest`: upload files, then follow each document to a final status (by the
gateway's event stream, docflow.cli.events, or by polling when that is not available)."""

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from docflow.cli.client import ApiError, GatewayClient
from docflow.cli.events import Follower, ServerEvent
from docflow.cli.statuses import COMPLETED, FINAL_STATUSES, QUEUED

UPLOAD_FAILED = "upload failed"
TIMED_OUT = "timed out"
VANISHED = "deleted"


class OnDuplicate(StrEnum):
    """POST /v1/documents' on_duplicate (the CLI stays free of the gateway's package; a
    test pins these to docflow.gateway.duplicates.OnDuplicate)."""

    SKIP = "skip"
    NEW = "new"
    REPROCESS = "reprocess"


@dataclass
class Outcome:
    """One file's fate, from upload to final status (the summary table's row)."""

    file: str
    document_id: str | None = None
    status: str = QUEUED
    progress: int = 0
    pages: int | None = None
    chunks: int | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES or self.status in (UPLOAD_FAILED, TIMED_OUT, VANISHED)

    @property
    def succeeded(self) -> bool:
        return self.status == COMPLETED

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def upload_all(client: GatewayClient, paths: list[Path], metadata: dict[str, Any] | None,
               errors: Console, on_duplicate: str | None = None) -> list[Outcome]:
    """Upload every file; a rejected file is recorded and the others still go. A file
    the tenant already has is followed as the document it already is (and said so)."""
    outcomes = []
    for path in paths:
        outcome = Outcome(file=str(path))
        try:
            accepted = client.upload(path, metadata, on_duplicate)
        except ApiError as exc:
            outcome.status, outcome.error = UPLOAD_FAILED, exc.detail
            reason = f"rejected (HTTP {exc.status_code}): {escape(exc.detail)}"
            errors.print(f"[red]✗[/red] {escape(str(path))}: {reason}", highlight=False, soft_wrap=True)
        else:
            outcome.document_id = accepted["document_id"]
            if accepted.get("duplicate"):
                errors.print(f"[dim]=[/dim] {escape(str(path))}: already uploaded, as document "
                             f"{outcome.document_id} (duplicate)", highlight=False, soft_wrap=True)
        outcomes.append(outcome)
    return outcomes


def submit_all_urls(client: GatewayClient, urls: list[str], metadata: dict[str, Any] | None,
                    errors: Console) -> list[Outcome]:
    """Hand in every URL; a refused one is recorded and the others still go."""
    outcomes = []
    for url in urls:
        outcome = Outcome(file=url)
        try:
            outcome.document_id = client.submit_url(url, metadata)["document_id"]
        except ApiError as exc:
            outcome.status, outcome.error = UPLOAD_FAILED, exc.detail
            errors.print(f"[red]✗[/red] {escape(url)}: rejected (HTTP {exc.status_code}): {escape(exc.detail)}",
                         highlight=False, soft_wrap=True)
        outcomes.append(outcome)
    return outcomes


def _refresh(client: GatewayClient, outcome: Outcome) -> None:
    try:
        document = client.document(outcome.document_id or "")
    except ApiError as exc:
        if exc.status_code == 503:
            return  # the gateway's Redis is briefly away; the document is not lost, ask again
        if exc.status_code != 404:
            raise
        outcome.status, outcome.error = VANISHED, "the document was deleted while it was processed"
        return
    outcome.status = document["status"]
    outcome.progress = document.get("progress", 0)
    outcome.pages, outcome.chunks = document.get("pages"), document.get("chunks")
    error = document.get("error")
    if error:
        outcome.error = f"{error.get('code')}: {error.get('message')}"


def _apply_event(outcome: Outcome, event: ServerEvent) -> None:
    """An event carries the document's whole state after the change (docflow.shared.events)."""
    if event.event == "deleted":
        outcome.status, outcome.error = VANISHED, "the document was deleted while it was processed"
        return
    data = event.data
    outcome.status = data.get("status") or outcome.status
    outcome.progress = data.get("progress") or 0
    outcome.pages, outcome.chunks = data.get("pages"), data.get("chunks")
    error = data.get("error")
    if error:
        outcome.error = f"{error.get('code')}: {error.get('message')}"


def follow(client: GatewayClient, outcomes: list[Outcome], console: Console, poll_interval: float,
           timeout: float | None) -> None:
    """Follow each uploaded document until it is final, with one progress bar per document:
    by the gateway's event stream, or by polling if that fails."""
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars = {id(o): progress.add_task(Path(o.file).name, total=100, status=o.status)
                for o in outcomes if not o.finished}

        def show(outcome: Outcome) -> None:
            done = 100 if outcome.succeeded else outcome.progress
            progress.update(bars[id(outcome)], completed=done, status=outcome.status)

        def refresh(outcome: Outcome) -> None:
            _refresh(client, outcome)

        if not Follower(client, outcomes, show, refresh, _apply_event).run(deadline):
            _poll(client, outcomes, show, poll_interval, deadline)
        for outcome in outcomes:
            if not outcome.finished:
                outcome.status, outcome.error = TIMED_OUT, f"not final after {timeout:g} s"
                show(outcome)


def _poll(client: GatewayClient, outcomes: list[Outcome], show, poll_interval: float,
          deadline: float | None) -> None:
    """Ask for each unfinished document's status until all are final or the deadline passes."""
    while True:
        for outcome in [o for o in outcomes if not o.finished]:
            _refresh(client, outcome)
            show(outcome)
        if all(o.finished for o in outcomes) or (deadline is not None and time.monotonic() >= deadline):
            return
        # Never past the deadline: --timeout is kept whatever the interval.
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        time.sleep(poll_interval if remaining is None else min(poll_interval, remaining))
