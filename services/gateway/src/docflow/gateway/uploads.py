"""Reading a document upload from the request stream, enforcing limits as bytes arrive.

FastAPI's `UploadFile` only reaches the handler after the whole body has been
parsed and spooled, so an oversized upload would be read to the end before being
refused. This reader feeds the stream to python-multipart itself and stops at the
first byte over the limit. The file is spooled (memory, then a temp file) so a slow
client holds disk, not memory, while it uploads. The file's SHA-256 is computed as
its bytes arrive (duplicate detection, idempotency fingerprints), not by a second read.
"""

import hashlib

from collections.abc import Callable
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Any

from fastapi import HTTPException, Request, status
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect

from docflow.gateway.metadata import MAX_METADATA_BYTES, MetadataError, parse_metadata_json

FILE_FIELD = "file"
METADATA_FIELD = "metadata"
# Boundaries, part headers and small form fields, on top of the file itself.
FORM_OVERHEAD_BYTES = MAX_METADATA_BYTES + 64 * 1024
SPOOL_IN_MEMORY_BYTES = 1024 * 1024
# One part header line (Content-Disposition carries the file name). python-multipart's
# default, 4 KiB, refused a file name of ~4 KB as "malformed multipart" where the name
# is meant to be shortened to 255 bytes (filenames.py); 64 KiB holds a name of 16,000
# four-byte characters, percent-encoded, and is still bounded (8 headers per part).
MAX_PART_HEADER_BYTES = 64 * 1024


@dataclass
class Upload:
    """The received file (spooled, rewound) and the raw form fields that came with it."""

    raw_filename: str
    file: SpooledTemporaryFile
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # hex digest of the file's bytes

    def head(self, size: int) -> bytes:
        self.file.seek(0)
        data = self.file.read(size)
        self.file.seek(0)
        return data

    def read_all(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


def _too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                         f"file too large: the limit is {limit} bytes")


class _FormCollector:
    """python-multipart callbacks: route each part's bytes to the file or a field."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.file: SpooledTemporaryFile | None = None
        self.raw_filename = ""
        self.file_size = 0
        self.digest = hashlib.sha256()
        self.metadata_bytes: bytearray | None = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._target: str | None = None  # the field the current part belongs to

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._target = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == FILE_FIELD:
            if b"filename" not in options:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    f"form field '{FILE_FIELD}' must be a file upload, not a text field")
            if self.file is not None:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    f"send exactly one '{FILE_FIELD}' per request")
            self.raw_filename = options[b"filename"].decode("utf-8", "replace")
            self.file = SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 (closed by Upload)
        elif name == METADATA_FIELD:
            self.metadata_bytes = bytearray()
        self._target = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target == FILE_FIELD and self.file is not None:
            self.file_size += end - start
            if self.file_size > self.max_file_bytes:
                raise _too_large(self.max_file_bytes)
            # Chunks are at most a socket read (~64 KiB) and land in memory or the
            # page cache; not worth a thread hop per chunk.
            self.file.write(data[start:end])
            self.digest.update(data[start:end])
        elif self._target == METADATA_FIELD and self.metadata_bytes is not None:
            self.metadata_bytes += data[start:end]
            if len(self.metadata_bytes) > MAX_METADATA_BYTES:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                    f"metadata too large: at most {MAX_METADATA_BYTES} bytes of JSON")
        # Any other field is read past and ignored.

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"send the document as multipart/form-data with a '{FILE_FIELD}' field")
    return options[b"boundary"]


def _check_declared_length(request: Request, max_body_bytes: int, max_file_bytes: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise _too_large(max_file_bytes)


def parse_metadata(raw: bytes | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        return parse_metadata_json(raw)
    except MetadataError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


async def feed_multipart(request: Request, boundary: bytes, collector, max_body_bytes: int,
                         too_large: Callable[[], HTTPException]) -> None:
    """Stream the body through python-multipart into `collector`'s callbacks, at most
    `max_body_bytes` of it (else `too_large()`); a malformed, cut-off or abandoned body
    is a 400. On any failure the collector is closed (what it spooled is removed)."""
    parser = MultipartParser(boundary, collector.callbacks(), max_header_size=MAX_PART_HEADER_BYTES)
    body_bytes = 0
    try:
        async for chunk in request.stream():
            body_bytes += len(chunk)
            if body_bytes > max_body_bytes:
                raise too_large()
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:
            # python-multipart's finalize does not check this: a body cut off inside a
            # file part would otherwise be taken as a truncated document.
            raise MultipartParseError("it ends before its closing boundary")
    except MultipartParseError as exc:
        collector.close()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc}") from None
    except ClientDisconnect:
        collector.close()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "client disconnected during upload") from None
    except BaseException:
        collector.close()
        raise


async def receive_upload(request: Request, max_file_bytes: int) -> Upload:
    """The upload, or an HTTPException (400/413/415/422) as soon as it is known to be bad."""
    boundary = _boundary(request)
    max_body_bytes = max_file_bytes + FORM_OVERHEAD_BYTES
    _check_declared_length(request, max_body_bytes, max_file_bytes)
    collector = _FormCollector(max_file_bytes)
    await feed_multipart(request, boundary, collector, max_body_bytes, lambda: _too_large(max_file_bytes))
    if collector.file is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"missing form field '{FILE_FIELD}' (the document to ingest)")
    try:
        raw_metadata = None if collector.metadata_bytes is None else bytes(collector.metadata_bytes)
        metadata = parse_metadata(raw_metadata)
    except HTTPException:
        collector.close()
        raise
    return Upload(raw_filename=collector.raw_filename, file=collector.file,
                  size=collector.file_size, metadata=metadata, sha256=collector.digest.hexdigest())
