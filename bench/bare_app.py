"""The upload benchmark's reference: a bare FastAPI endpoint that only stores the file.

Served like the gateway (one uvicorn process, no access log), so the difference in
latency is what docflow does per upload: authenticate, rate-limit, sniff the type,
store the original, record the document and enqueue the pipeline.

    python -m bench.bare_app <port> <folder>
"""

import shutil
import sys
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI, File, UploadFile

app = FastAPI()
STORE = Path(sys.argv[2] if len(sys.argv) > 2 else ".data/bench/bare")


@app.post("/v1/documents", status_code=202)
def upload(file: UploadFile = File(...)) -> dict[str, str]:
    document_id = uuid.uuid4().hex
    with open(STORE / document_id, "wb") as out:
        shutil.copyfileobj(file.file, out)
    return {"document_id": document_id}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    STORE.mkdir(parents=True, exist_ok=True)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
