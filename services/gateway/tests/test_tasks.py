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


def _record(gateway, document_id: str) -> dict:
    return gateway.get(f"/v1/documents/{document_id}").json()


def test_a_run_replaced_by_a_reprocess_ends_superseded_not_started_forever(gateway, redis_client):
    accepted = gateway.accepted()
    old = accepted["task_id"]
    mark(gateway, old, "extract", states.SUCCESS)
    mark(gateway, old, "embed", states.STARTED)  # its run stops itself once the version is stale
    new = gateway.post(f"/v1/documents/{accepted['document_id']}/reprocess").json()["task_id"]

    body = gateway.get(f"/v1/tasks/{old}").json()
    assert [s["state"] for s in body["stages"]] == ["SUCCESS", "SUPERSEDED", "SUPERSEDED"]
    assert body["state"] == "SUPERSEDED"
    assert gateway.get(f"/v1/tasks/{new}").json()["state"] == "PENDING", "the new run is the live one"


def test_a_cancelled_run_ends_cancelled(gateway):
    accepted = gateway.accepted()
    mark(gateway, accepted["task_id"], "extract", states.STARTED)
    assert gateway.post(f"/v1/documents/{accepted['document_id']}/cancel").status_code == 200
    body = gateway.get(f"/v1/tasks/{accepted['task_id']}").json()
    assert [s["state"] for s in body["stages"]] == ["CANCELLED"] * 3 and body["state"] == "CANCELLED"


def test_stages_whose_results_are_gone_are_settled_by_the_record(gateway, redis_client):
    """Results expire (and a completed version's are forgotten): the record still knows."""
    from docflow.shared.errors import ErrorCode
    from docflow.shared.status import DocumentError, DocumentStatus, StatusStore

    store = StatusStore(redis_client)
    done, failed = gateway.accepted(), gateway.accepted()
    store.complete(done["document_id"], 1, vectors=2)
    assert gateway.get(f"/v1/tasks/{done['task_id']}").json()["state"] == "SUCCESS"

    store.begin_stage(failed["document_id"], 1, "embed", DocumentStatus.EMBEDDING, 40)
    store.fail(failed["document_id"], 1, DocumentError(code=ErrorCode.TIMEOUT, message="slow", stage="embed"))
    body = gateway.get(f"/v1/tasks/{failed['task_id']}").json()
    assert [s["state"] for s in body["stages"]] == ["SUCCESS", "FAILURE", "PENDING"]
    assert body["state"] == "FAILURE"
