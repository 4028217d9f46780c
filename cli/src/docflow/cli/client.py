"""A small typed client for the gateway's REST API, with errors the CLI can print."""

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class ApiError(Exception):
    """The gateway answered with an error status; `detail` is its explanation."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class GatewayUnreachable(Exception):
    """No HTTP answer at all: wrong URL, gateway down, network trouble."""


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(_validation_message(item) for item in detail)
    return response.text.strip()[:300] or response.reason_phrase


def _validation_message(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", []) if part != "body")
    return f"{location}: {item.get('msg', '')}" if location else str(item.get("msg", item))


def _document_path(document_id: str, action: str = "") -> str:
    # Quoted whole: an id typed by a user must never walk to another route.
    return f"/v1/documents/{quote(document_id, safe='')}{action}"


class GatewayClient:
    def __init__(self, base_url: str, api_key: str, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=DEFAULT_TIMEOUT, transport=transport,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayUnreachable(f"cannot reach the docflow gateway at {self.base_url}: {exc}") from None
        if response.is_error:
            raise ApiError(response.status_code, _detail(response))
        return response

    def upload(self, path: Path, metadata: dict[str, Any] | None = None,
               on_duplicate: str | None = None) -> dict[str, Any]:
        """The gateway's answer: a new document (202) or, for bytes the tenant already
        has, the existing one with `duplicate: true` (on_duplicate; unset: the server's skip)."""
        data = {"metadata": json.dumps(metadata)} if metadata else None
        params = {"on_duplicate": on_duplicate} if on_duplicate else None
        with path.open("rb") as file:  # httpx streams the open file
            return self._request("POST", "/v1/documents", files={"file": (path.name, file)}, data=data,
                                 params=params).json()

    def batch(self, paths: list[Path], metadata: dict[str, Any] | None = None, on_duplicate: str | None = None,
              idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /v1/batches: `{batch_id, documents: [...]}`, an entry per file in order (a
        document, or the file's `error`). The files are streamed, not read into memory."""
        data = {"metadata": json.dumps(metadata)} if metadata else None
        params = {"on_duplicate": on_duplicate} if on_duplicate else None
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        with ExitStack() as opened:
            files = [("file", (path.name, opened.enter_context(path.open("rb")))) for path in paths]
            return self._request("POST", "/v1/batches", files=files, data=data, params=params,
                                 headers=headers).json()

    def submit_url(self, url: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /v1/documents with `{url, metadata}`: a document the extractor fetches (202)."""
        body: dict[str, Any] = {"url": url}
        if metadata:
            body["metadata"] = metadata
        return self._request("POST", "/v1/documents", json=body).json()

    def document(self, document_id: str) -> dict[str, Any]:
        return self._request("GET", _document_path(document_id)).json()

    def documents(self, status: str | None = None, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return self._request("GET", "/v1/documents", params=params).json()

    def delete(self, document_id: str) -> None:
        self._request("DELETE", _document_path(document_id))

    def reprocess(self, document_id: str) -> dict[str, Any]:
        return self._request("POST", _document_path(document_id, "/reprocess")).json()

    def cancel(self, document_id: str) -> dict[str, Any]:
        return self._request("POST", _document_path(document_id, "/cancel")).json()

    def search(self, query: str, top_k: int, mode: str = "hybrid",
               filter_: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query, "top_k": top_k, "mode": mode}
        if filter_ is not None:
            body["filter"] = filter_
        return self._request("POST", "/v1/search", json=body).json()

    @contextmanager
    def events(self, last_event_id: str | None = None, read_timeout: float = 60.0) -> Iterator[Iterator[str]]:
        """The lines of the tenant's event stream (GET /v1/events, Server-Sent Events),
        after `last_event_id` if given; a read silent for `read_timeout` raises
        httpx.ReadTimeout. Parsed by docflow.cli.events."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            with self._http.stream("GET", "/v1/events", headers=headers,
                                   timeout=httpx.Timeout(read_timeout, connect=5.0)) as response:
                if response.is_error:
                    response.read()
                    raise ApiError(response.status_code, _detail(response))
                yield response.iter_lines()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnreachable(f"cannot reach the docflow gateway at {self.base_url}: {exc}") from None
