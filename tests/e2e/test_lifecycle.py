"""Reprocess, delete, and a worker killed mid-task: nothing lost, nothing duplicated."""

import subprocess
import sys
import time
from pathlib import Path

from docflow.devstack import samples
from docflow.indexer.stores import open_vector_store
from docflow.shared.names import Stage

TOPIC = "Migrating cranes rest for three weeks in the wetlands south of the river delta."


def stored_vectors(stack, tenant: str, document_id: str) -> int:
    """Vectors of the document actually in the vector store (not what status says)."""
    return open_vector_store(stack.settings()).count(tenant, document_id)


def test_reprocess_replaces_the_old_vectors(stack, api_a):
    document_id = api_a.upload("cranes.txt", samples.text([TOPIC]))
    first = api_a.wait_final(document_id)
    assert first["status"] == "completed"
    response = api_a.http.post(f"/v1/documents/{document_id}/reprocess")
    assert response.status_code == 202
    second = api_a.wait_final(document_id)
    assert second["status"] == "completed" and second["version"] == first["version"] + 1
    assert stored_vectors(stack, api_a.tenant, document_id) == second["chunks"]


def test_delete_removes_record_artifacts_and_vectors(stack, api_a):
    document_id = api_a.upload("delete-me.txt", samples.text([f"Ephemeral note: {TOPIC}"]))
    assert api_a.wait_final(document_id)["status"] == "completed"
    assert api_a.http.delete(f"/v1/documents/{document_id}").status_code == 204
    assert api_a.http.get(f"/v1/documents/{document_id}").status_code == 404
    storage_dir = stack.data_dir / "storage" / "tenants" / api_a.tenant / "documents" / document_id
    assert not storage_dir.exists()
    deadline = time.monotonic() + 30
    while stored_vectors(stack, api_a.tenant, document_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored_vectors(stack, api_a.tenant, document_id) == 0
    assert all(hit["document_id"] != document_id for hit in api_a.search(f"Ephemeral note: {TOPIC}"))


def test_a_worker_killed_mid_task_loses_nothing(stack, api_a):
    """SIGKILL the whole extractor (main process and pool child) while it OCRs a
    scanned document. The message it held is redelivered to a fresh worker after
    the visibility timeout and the document completes with each chunk indexed once."""
    pages = [f"Page {n}: {TOPIC} Observation number {n} was logged at the station." for n in range(6)]
    document_id = api_a.upload("survey.pdf", samples.scanned_pdf(pages))
    api_a.wait_status(document_id, "extracting")
    time.sleep(0.5)  # well inside OCR of the first pages
    stack.workers[Stage.EXTRACT].kill()
    assert api_a.document(document_id)["status"] == "extracting"
    stack.start_worker(Stage.EXTRACT)
    stack.wait_for_worker(Stage.EXTRACT)
    record = api_a.wait_final(document_id, timeout=240)
    assert record["status"] == "completed", record["error"]
    assert record["attempts"] >= 1
    assert stored_vectors(stack, api_a.tenant, document_id) == record["chunks"] == record["vectors"]


def test_cli_ingests_with_progress_and_searches(stack, api_a, tmp_path):
    path = tmp_path / "herons.md"
    path.write_text(f"# Field notes\n\nGrey herons nest in colonies along the canal. {TOPIC}\n")
    env = {"DOCFLOW_URL": stack.gateway_url, "DOCFLOW_API_KEY": api_a.key, "PATH": "/usr/bin:/bin",
           "COLUMNS": "160"}
    cli = [str(Path(sys.executable).parent / "docflow")]
    ingest = subprocess.run([*cli, "ingest", str(path)], env=env, capture_output=True, text=True,
                            timeout=180)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "completed" in ingest.stdout
    found = subprocess.run([*cli, "search", "Grey herons nest in colonies", "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert "herons" in found.stdout
