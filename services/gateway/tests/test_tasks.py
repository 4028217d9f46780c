"""GET /v1/tasks/{task_id}: each stage's Celery state under the pipeline's task id."""

from celery import states


def mark(gateway, task_id: str, stage: str, state: str) -> None:
    """Record a stage's state in the result backend, as its worker would."""
    backend = gateway.client.app.state.services.celery.backend
    backend.store_result(f"{task_id}.{stage}", {} if state == states.SUCCESS else None, state)


def test_a_fresh_pipeline_is_pending_in_every_stage(gateway):
    accepted = gateway.accepted()
    task_id = accepted["task_id"]

    response = gateway.get(f"/v1/tasks/{task_id}")

    assert response.status_code == 200
    assert response.json() == {
        "task_id": task_id,
        "document_id": accepted["document_id"],
        "state": "PENDING",
        "stages": [
            {"stage": "extract", "task_id": f"{task_id}.extract", "state": "PENDING"},
            {"stage": "embed", "task_id": f"{task_id}.embed", "state": "PENDING"},
            {"stage": "index", "task_id": f"{task_id}.index", "state": "PENDING"},
        ],
    }


def test_overall_state_follows_the_first_unfinished_stage(gateway):
    task_id = gateway.accepted()["task_id"]
    mark(gateway, task_id, "extract", states.SUCCESS)
    mark(gateway, task_id, "embed", states.STARTED)
    body = gateway.get(f"/v1/tasks/{task_id}").json()
    assert [s["state"] for s in body["stages"]] == ["SUCCESS", "STARTED", "PENDING"]
    assert body["state"] == "STARTED"

    mark(gateway, task_id, "embed", states.FAILURE)
    assert gateway.get(f"/v1/tasks/{task_id}").json()["state"] == "FAILURE"


def test_all_stages_done_is_success(gateway):
    task_id = gateway.accepted()["task_id"]
    for stage in ("extract", "embed", "index"):
        mark(gateway, task_id, stage, states.SUCCESS)
    assert gateway.get(f"/v1/tasks/{task_id}").json()["state"] == "SUCCESS"


def test_unknown_task_is_404(gateway):
    response = gateway.get("/v1/tasks/does-not-exist")
    assert response.status_code == 404
    assert response.json() == {"detail": "task does-not-exist not found"}


def test_a_deleted_documents_task_stays_visible_to_its_tenant_only(gateway):
    accepted = gateway.accepted()
    gateway.delete(f"/v1/documents/{accepted['document_id']}")
    assert gateway.get(f"/v1/tasks/{accepted['task_id']}").status_code == 200
    assert gateway.get(f"/v1/tasks/{accepted['task_id']}", tenant="tenant-b").status_code == 404
