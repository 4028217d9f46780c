"""The gateway never loads a stage's heavy libraries, even after serving requests."""

import json
import subprocess
import sys

FORBIDDEN = ["pypdf", "docx", "pytesseract", "torch", "lancedb", "pinecone", "numpy",
             "sentence_transformers", "transformers", "pyarrow", "PIL"]

# Runs in a fresh interpreter: this test process has imported plenty already.
PROBE = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from docflow.gateway.main import create_app
from docflow.shared.settings import Settings

settings = Settings(redis_url=sys.argv[1], storage_path=sys.argv[2], api_keys="k=tenant-a")
with TestClient(create_app(settings)) as client:
    auth = {"Authorization": "Bearer k"}
    accepted = client.post("/v1/documents", headers=auth, files={"file": ("a.txt", b"hello there")})
    assert accepted.status_code == 202, accepted.text
    client.get(f"/v1/documents/{accepted.json()['document_id']}", headers=auth)
    client.get(f"/v1/tasks/{accepted.json()['task_id']}", headers=auth)
    # A document's pages and chunks, read from its artifacts as the extractor stores them.
    from docflow.shared import artifacts
    from docflow.shared.messages import Chunk, version_prefix
    from docflow.shared.storage import LocalStorage
    prefix = version_prefix("tenant-a", accepted.json()["document_id"], 1)
    LocalStorage(Path(sys.argv[2])).put(prefix + artifacts.PAGES, artifacts.dump_pages(
        [artifacts.PageText(page=None, text="hello there")]))
    LocalStorage(Path(sys.argv[2])).put(prefix + artifacts.CHUNKS, artifacts.dump_chunks(
        [Chunk(index=0, text="hello there")]))
    for contents in ("pages", "chunks"):
        read = client.get(f"/v1/documents/{accepted.json()['document_id']}/{contents}", headers=auth)
        assert read.status_code == 200, read.text
    client.get("/readyz")
%(extra)s
forbidden = json.loads(sys.argv[3])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in forbidden)))
"""


def heavy_modules_loaded(redis_url: str, storage_path: str, extra: str = "") -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE % {"extra": extra}, redis_url, storage_path, json.dumps(FORBIDDEN)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_gateway_imports_no_stage_library(redis_server, redis_client, tmp_path):
    assert heavy_modules_loaded(redis_server.url, str(tmp_path)) == []


def test_the_probe_would_notice_a_heavy_import(redis_server, redis_client, tmp_path):
    # Guards the guard: the same probe with numpy imported must report it.
    assert "numpy" in heavy_modules_loaded(redis_server.url, str(tmp_path), extra="import numpy")
