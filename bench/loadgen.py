"""A small HTTP/1.1 load generator: N keep-alive connections, one request in flight each.

The request bytes are built once and written as they are, and a response is read by
its Content-Length only, so the client costs little CPU on a 2-core machine where it
shares the cores with the server it measures (httpx costs several times more per
request and would blur the difference between two servers).
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field


def multipart_upload(path: str, host: str, headers: dict[str, str], filename: str, data: bytes,
                     content_type: str = "application/pdf") -> bytes:
    boundary = uuid.uuid4().hex
    body = b"".join([
        f"--{boundary}\r\n".encode(),
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode(),
        f"Content-Type: {content_type}\r\n\r\n".encode(),
        data,
        f"\r\n--{boundary}--\r\n".encode(),
    ])
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
            f"Content-Type: multipart/form-data; boundary={boundary}", "Connection: keep-alive",
            *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _run(host: str, port: int, request: bytes, concurrency: int, total: int,
               ok: frozenset[int]) -> LoadResult:
    result = LoadResult()
    remaining = total

    async def client() -> None:
        nonlocal remaining
        reader = writer = None
        while remaining > 0:
            remaining -= 1
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                started = time.perf_counter()
                writer.write(request)
                await writer.drain()
                status = await _read_response(reader)
                elapsed = time.perf_counter() - started
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status in ok:
                result.latencies.append(elapsed)
            else:
                result.errors += 1
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def run_load(host: str, port: int, request: bytes, concurrency: int, total: int,
             ok: frozenset[int] = frozenset({200, 201, 202})) -> LoadResult:
    return asyncio.run(_run(host, port, request, concurrency, total, ok))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
