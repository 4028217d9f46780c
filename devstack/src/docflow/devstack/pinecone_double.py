"""A local HTTP double of Pinecone's data plane, for tests and the local stack.

Pinecone's service cannot be reached from here, so this stands in for its data
plane. It answers the REST calls the installed `pinecone` 10.x client makes (POST
/vectors/upsert, POST /query, POST /vectors/delete, GET /vectors/list, POST
/describe_index_stats), checks the API-version and Api-Key headers the client sends,
enforces Pinecone's documented limits (<= 1000 vectors and <= 2 MB per upsert,
<= 40 KB metadata per vector, <= 1000 ids per delete, no delete by filter on
serverless, list pages <= 100) and records every request's size, so tests can prove
the backend respects them. Namespaces are kept apart exactly as Pinecone keeps them.

Used by the indexer's unit tests and by end-to-end tests whose workers index into
it over HTTP (`served()` runs it on a port of 127.0.0.1 in a thread).
"""

import base64
import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

API_VERSION = "2026-07"  # what pinecone 10.2 sends as X-Pinecone-Api-Version
API_KEY = "test-key"


@dataclass
class RecordedRequest:
    path: str
    body_bytes: int
    body: dict


class PineconeDouble:
    """Pinecone's service cannot be reached from here, so this stands in for its data plane."""

    def __init__(self) -> None:
        self.reset()
        self.app = self._build_app()

    def reset(self, dimension: int = 8) -> None:
        """Empty the index; like a real index it holds vectors of one dimension."""
        self.dimension = dimension
        self.namespaces: dict[str, dict[str, dict]] = defaultdict(dict)
        self.requests: list[RecordedRequest] = []
        self.failures: list[int] = []  # statuses to answer the next requests with
        # Serverless listing is eventually consistent; while `listing_lags`, new upserts
        # stay out of list results, as they would for a few seconds on Pinecone.
        self.listing_lags = False
        self.unlisted: set[str] = set()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def error(status: int, message: str) -> JSONResponse:
            return JSONResponse({"code": status, "message": message}, status_code=status)

        @app.middleware("http")
        async def check_and_record(request: Request, call_next):
            if request.headers.get("api-key") != API_KEY:
                return error(401, "Invalid API Key")
            if request.headers.get("x-pinecone-api-version") != API_VERSION:
                return error(400, "unsupported API version")
            body = await request.body()
            recorded = RecordedRequest(request.url.path, len(body), json.loads(body) if body else {})
            self.requests.append(recorded)
            if self.failures:
                return error(self.failures.pop(0), "injected failure")
            return await call_next(request)

        @app.post("/vectors/upsert")
        async def upsert(request: Request):
            body = await request.body()
            if len(body) > 2 * 1000 * 1000:
                return error(400, f"request size {len(body)} exceeds the maximum of 2MB")
            payload = json.loads(body)
            vectors = payload["vectors"]
            if len(vectors) > 1000:
                return error(400, "at most 1000 vectors per upsert")
            for vector in vectors:
                if len(vector["values"]) != self.dimension:
                    return error(400, f"dimension {len(vector['values'])} does not match {self.dimension}")
                metadata = vector.get("metadata") or {}
                if len(json.dumps(metadata, ensure_ascii=False).encode()) > 40 * 1000:
                    return error(400, f"metadata of {vector['id']} exceeds 40KB")
                if any(value is None for value in metadata.values()):
                    return error(400, "metadata values cannot be null")
            space = self.namespaces[payload.get("namespace", "")]
            for vector in vectors:
                space[vector["id"]] = {"values": vector["values"], "metadata": vector.get("metadata")}
                if self.listing_lags:
                    self.unlisted.add(vector["id"])
            return {"upsertedCount": len(vectors)}

        @app.post("/query")
        async def query(request: Request):
            payload = await request.json()
            space = self.namespaces.get(payload.get("namespace", ""), {})
            query_vector = np.array(payload["vector"], dtype=np.float64)
            scored = []
            for id_, stored in space.items():
                values = np.array(stored["values"], dtype=np.float64)
                norms = np.linalg.norm(values) * np.linalg.norm(query_vector)
                cosine = float(values @ query_vector / norms)
                match = {"id": id_, "score": cosine}
                if payload.get("includeMetadata"):
                    # Pinecone keeps every number as a float.
                    match["metadata"] = {k: float(v) if isinstance(v, int) else v
                                         for k, v in (stored["metadata"] or {}).items()}
                scored.append(match)
            scored.sort(key=lambda m: m["score"], reverse=True)
            return {"matches": scored[:payload["topK"]], "namespace": payload.get("namespace", "")}

        @app.post("/vectors/delete")
        async def delete(request: Request):
            payload = await request.json()
            if "filter" in payload:
                return error(400, "Serverless and Starter indexes do not support "
                                  "deleting with metadata filtering")
            ids = payload.get("ids", [])
            if len(ids) > 1000:
                return error(400, "at most 1000 ids per delete")
            space = self.namespaces.get(payload.get("namespace", ""), {})
            for id_ in ids:
                space.pop(id_, None)
            return {}

        @app.get("/vectors/list")
        async def list_ids(namespace: str = "", prefix: str = "", limit: int = 100,
                           paginationToken: str | None = None):  # noqa: N803 (the API's name)
            if limit > 100:
                return error(400, "limit must be at most 100")
            ids = sorted(id_ for id_ in self.namespaces.get(namespace, {})
                         if id_.startswith(prefix) and id_ not in self.unlisted)
            start = int(base64.b64decode(paginationToken)) if paginationToken else 0
            page = ids[start:start + limit]
            response = {"vectors": [{"id": id_} for id_ in page], "namespace": namespace,
                        "usage": {"readUnits": 1}}
            if start + limit < len(ids):
                response["pagination"] = {"next": base64.b64encode(str(start + limit).encode()).decode()}
            return response

        @app.post("/describe_index_stats")
        async def describe_index_stats():
            counts = {name: {"vectorCount": len(space)} for name, space in self.namespaces.items() if space}
            return {"namespaces": counts, "dimension": self.dimension, "indexFullness": 0.0,
                    "totalVectorCount": sum(c["vectorCount"] for c in counts.values())}

        return app


@contextmanager
def served(double: PineconeDouble) -> Iterator[str]:
    """Serve `double` with uvicorn on a free port of 127.0.0.1, in a thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(double.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the Pinecone double did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
