"""`docflow ingest --batch`: send the files N to a request (POST /v1/batches) instead of
one by one. Each file is judged on its own by the gateway: a refused file is that
file's failure, the others of its batch go on. A batch request is sent with an
Idempotency-Key of its own and retried with it after a 503, a 409 (the first try is
still being worked on) or a dropped connection, so a retry never makes a file twice.
"""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from docflow.cli.client import ApiError, GatewayClient, GatewayUnreachable
from docflow.cli.ingest import UPLOAD_FAILED, Outcome

DEFAULT_BATCH_SIZE = 100
RETRIES = 4
_RETRIED_STATUSES = (409, 503)


def files_of(paths: list[Path]) -> list[Path]:
    """The files named, and every file under a directory named (recursively, in name
    order; hidden files and directories are left out)."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for found in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in found.relative_to(path).parts)
            if found.is_file() and not hidden:
                files.append(found)
    return files


def _chunks(paths: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start:start + size]


def _send(client: GatewayClient, paths: list[Path], metadata: dict[str, Any] | None,
          on_duplicate: str | None) -> dict[str, Any]:
    key = uuid.uuid4().hex  # this batch's, for each of its tries
    for attempt in range(RETRIES + 1):
        try:
            return client.batch(paths, metadata, on_duplicate, idempotency_key=key)
        except ApiError as exc:
            if exc.status_code not in _RETRIED_STATUSES or attempt == RETRIES:
                raise
        except GatewayUnreachable:
            if attempt == RETRIES:
                raise
        time.sleep(min(8.0, 0.5 * 2 ** attempt))
    raise AssertionError("unreachable")


def upload_batches(client: GatewayClient, paths: list[Path], metadata: dict[str, Any] | None,
                   errors: Console, on_duplicate: str | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> list[Outcome]:
    """Send every file, `batch_size` to a request; one Outcome per file, in order."""
    outcomes: list[Outcome] = []
    for chunk in _chunks(paths, batch_size):
        try:
            answer = _send(client, chunk, metadata, on_duplicate)
        except ApiError as exc:  # the request as a whole was refused: every file of it
            for path in chunk:
                outcomes.append(Outcome(file=str(path), status=UPLOAD_FAILED, error=exc.detail))
            errors.print(f"[red]✗[/red] a batch of {len(chunk)} files, from {escape(str(chunk[0]))}: "
                         f"rejected (HTTP {exc.status_code}): {escape(exc.detail)}",
                         highlight=False, soft_wrap=True)
            continue
        for path, entry in zip(chunk, answer["documents"], strict=True):
            outcome = Outcome(file=str(path))
            if entry.get("document_id"):
                outcome.document_id = entry["document_id"]
                if entry.get("duplicate"):
                    errors.print(f"[dim]=[/dim] {escape(str(path))}: already uploaded, as document "
                                 f"{outcome.document_id} (duplicate)", highlight=False, soft_wrap=True)
            else:
                error = entry.get("error") or {}
                outcome.status, outcome.error = UPLOAD_FAILED, error.get("detail", "refused")
                errors.print(f"[red]✗[/red] {escape(str(path))}: rejected ({escape(str(error.get('code')))}): "
                             f"{escape(outcome.error)}", highlight=False, soft_wrap=True)
            outcomes.append(outcome)
    return outcomes
