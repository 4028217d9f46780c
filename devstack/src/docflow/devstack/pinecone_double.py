"""A local HTTP double of Pinecone's data plane, for tests and the local stack.

Pinecone's service cannot be reached from here, so this stands in for its data
plane. It answers the REST calls the installed `pinecone` 10.x client makes (POST
/vectors/upsert, POST /query, POST /vectors/delete, GET /vectors/list, GET
/vectors/fetch, POST /vectors/update, POST /describe_index_stats), checks the API-version and Api-Key headers the client sends,
enforces Pinecone's documented limits (<= 1000 vectors and <= 2 MB per upsert,
<= 40 KB metadata per vector, <= 1000 ids per delete, no delete by filter on
serverless, list pages <= 100) and records every request's size, so tests can prove
the backend respects them. Namespaces are kept apart exactly as Pinecone keeps them.

Queries honour `filter` (evaluated by `docflow.shared.search_filter.matches`, the
reference evaluator of Pinecone's dialect, over each vector's stored metadata) and
`sparseVector`: like a Pinecone index with the dotproduct metric, a match scores its
dense similarity plus the sparse dot product, and a query of sparse values alone ranks
by the sparse part only (records without sparse values, or sharing no dimension with
the query, are not matched). As Pinecone documents (its limits page), sparse values
are stored on any metric but a query with them is refused unless the index was reset
with `metric="dotproduct"`; a sparse vector holds at most 1000 non-zero values; a
dense vector needs at least one non-zero value. `update` by id
replaces values or sparse values and merges `setMetadata` into the stored metadata
(it never removes a key), as Pinecone documents.

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
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from docflow.shared.search_filter import matches

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

    def reset(self, dimension: int = 8, metric: str = "cosine") -> None:
        """Empty the index; like a real index it holds vectors of one dimension and one
        metric ("cosine" or "dotproduct"; only dotproduct takes sparse values)."""
        if metric not in ("cosine", "dotproduct"):
            raise ValueError(f"unsupported metric {metric!r}")
        self.dimension = dimension
        self.metric = metric
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
                if not any(vector["values"]):
                    return error(400, f"dense vector of {vector['id']} must contain at least one non-zero value")
                if (problem := self._sparse_problem(vector.get("sparseValues"))) is not None:
                    return error(400, f"sparse values of {vector['id']}: {problem}")
            space = self.namespaces[payload.get("namespace", "")]
            for vector in vectors:
                space[vector["id"]] = {"values": vector["values"], "metadata": vector.get("metadata"),
                                       "sparse": _sparse_dict(vector.get("sparseValues"))}
                if self.listing_lags:
                    self.unlisted.add(vector["id"])
            return {"upsertedCount": len(vectors)}

        @app.post("/query")
        async def query(request: Request):
            payload = await request.json()
            space = self.namespaces.get(payload.get("namespace", ""), {})
            dense = payload.get("vector")
            sparse_query = payload.get("sparseVector")
            if dense is None and sparse_query is None:
                return error(400, "a query needs a vector, a sparse vector or an id")
            if dense is not None and len(dense) != self.dimension:
                return error(400, f"query dimension {len(dense)} does not match {self.dimension}")
            if sparse_query is not None and self.metric != "dotproduct":
                return error(400, "sparse vectors can be queried only in an index with the dotproduct metric")
            if (problem := self._sparse_problem(sparse_query)) is not None:
                return error(400, f"query sparse vector: {problem}")
            where = payload.get("filter")
            query_vector = None if dense is None else np.array(dense, dtype=np.float64)
            query_sparse = _sparse_dict(sparse_query)
            scored = []
            for id_, stored in space.items():
                metadata = stored["metadata"] or {}
                try:
                    admitted = matches(where, _as_pinecone_keeps(metadata))
                except (AttributeError, KeyError, TypeError, ValueError):
                    return error(400, f"invalid filter: {where!r}")
                if not admitted:
                    continue
                score = 0.0
                if query_sparse is not None:
                    shared = set(query_sparse) & set(stored["sparse"] or {})
                    if query_vector is None and not shared:
                        continue  # a sparse-only query matches only records sharing a dimension
                    score += sum(query_sparse[i] * stored["sparse"][i] for i in shared)
                if query_vector is not None:
                    score += self._dense_score(np.array(stored["values"], dtype=np.float64), query_vector)
                match = {"id": id_, "score": score}
                if payload.get("includeMetadata"):
                    match["metadata"] = _as_pinecone_keeps(metadata)
                scored.append(match)
            scored.sort(key=lambda m: m["score"], reverse=True)
            return {"matches": scored[:payload["topK"]], "namespace": payload.get("namespace", "")}

        @app.get("/vectors/fetch")
        async def fetch(ids: list[str] = Query(default_factory=list), namespace: str = ""):
            if not ids:
                return error(400, "ids must not be empty")
            space = self.namespaces.get(namespace, {})
            found = {}
            for id_ in ids:
                if id_ in space:
                    stored = space[id_]
                    vector = {"id": id_, "values": stored["values"],
                              "metadata": _as_pinecone_keeps(stored["metadata"] or {})}
                    if stored["sparse"]:
                        indices = sorted(stored["sparse"])
                        vector["sparseValues"] = {"indices": indices,
                                                  "values": [stored["sparse"][i] for i in indices]}
                    found[id_] = vector
            return {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}

        @app.post("/vectors/update")
        async def update(request: Request):
            payload = await request.json()
            if "filter" in payload:
                # Not what docflow uses; refuse rather than pretend.
                return error(400, "the double updates by id only")
            space = self.namespaces.get(payload.get("namespace", ""), {})
            stored = space.get(payload.get("id", ""))
            if stored is None:
                return error(404, f"vector {payload.get('id')!r} not found")
            if "values" in payload:
                if len(payload["values"]) != self.dimension:
                    return error(400, "dimension does not match")
                stored["values"] = payload["values"]
            if "sparseValues" in payload:
                if (problem := self._sparse_problem(payload["sparseValues"])) is not None:
                    return error(400, f"sparse values: {problem}")
                stored["sparse"] = _sparse_dict(payload["sparseValues"])
            if "setMetadata" in payload:
                merged = {**(stored["metadata"] or {}), **payload["setMetadata"]}
                if any(value is None for value in merged.values()):
                    return error(400, "metadata values cannot be null")
                if len(json.dumps(merged, ensure_ascii=False).encode()) > 40 * 1000:
                    return error(400, "metadata exceeds 40KB")
                stored["metadata"] = merged
            return {}

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

    def _sparse_problem(self, sparse: dict | None) -> str | None:
        """Why Pinecone would refuse these sparse values (in an upsert, update or query), or None."""
        if sparse is None:
            return None
        indices, values = sparse.get("indices", []), sparse.get("values", [])
        if not indices or len(indices) != len(values):
            return "indices and values must be non-empty and of the same length"
        if len(indices) > 1000:
            return "a sparse vector can contain no more than 1000 non-zero values"
        if len(set(indices)) != len(indices):
            return "indices must be unique"
        if any(not isinstance(i, int) or not 0 <= i < 2 ** 32 for i in indices):
            return "indices must be uint32"
        return None

    def _dense_score(self, values: np.ndarray, query: np.ndarray) -> float:
        if self.metric == "dotproduct":
            return float(values @ query)
        return float(values @ query / (np.linalg.norm(values) * np.linalg.norm(query)))


def _sparse_dict(sparse: dict | None) -> dict[int, float] | None:
    if not sparse:
        return None
    return dict(zip(sparse["indices"], sparse["values"], strict=True))


def _as_pinecone_keeps(metadata: dict) -> dict:
    """Pinecone keeps every number as a float (3 comes back as 3.0)."""
    return {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in metadata.items()}


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
