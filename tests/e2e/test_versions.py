"""A document's versions end cleanly: a replaced run says it was superseded, and a
cancelled reprocess keeps serving the version before it -- and says so.

Real stack (the session's): gateway over HTTP, the three workers, Redis, LanceDB.
"""

import time

from docflow.devstack import samples

from .test_lifecycle import stored_vectors

TOPIC = "Lighthouse keepers logged the fog horn's schedule in a brass-bound ledger every winter."


def task_state(api, task_id: str) -> dict:
    response = api.http.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_runs_replaced_by_concurrent_reprocesses_end_superseded(stack, api_a):
    document_id = api_a.upload("keepers.txt", samples.text([TOPIC] * 3))
    first_task = api_a.document(document_id)["task_id"]
    assert api_a.wait_final(document_id)["status"] == "completed"
    replaced = [first_task]
    for _ in range(5):
        response = api_a.http.post(f"/v1/documents/{document_id}/reprocess")
        assert response.status_code == 202, response.text
        replaced.append(response.json()["task_id"])
    last = replaced.pop()
    record = api_a.wait_final(document_id)
    assert record["status"] == "completed" and record["version"] == 6

    assert task_state(api_a, last)["state"] == "SUCCESS"
    # The first run completed before it was replaced; the four after it never finished.
    assert task_state(api_a, first_task)["state"] == "SUCCESS"
    for task_id in replaced[1:]:
        stages = [s["state"] for s in task_state(api_a, task_id)["stages"]]
        assert set(stages) <= {"SUCCESS", "SUPERSEDED"} and "SUPERSEDED" in stages, stages
    assert stored_vectors(stack, api_a.tenant, document_id) == record["chunks"] == record["served_vectors"]


def test_a_cancelled_reprocess_keeps_serving_the_previous_version_and_says_so(stack, api_a):
    document_id = api_a.upload("ledger.txt", samples.text([TOPIC, "The ledger's last entry was in 1931."]))
    first = api_a.wait_final(document_id)
    assert first["status"] == "completed"
    assert (first["served_version"], first["served_vectors"]) == (1, first["vectors"])

    reprocess = api_a.http.post(f"/v1/documents/{document_id}/reprocess").json()
    cancelled = api_a.http.post(f"/v1/documents/{document_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    time.sleep(3)  # whatever of version 2 had started stops itself (and removes what it wrote)

    record = api_a.document(document_id)
    assert (record["status"], record["version"], record["vectors"]) == ("cancelled", 2, None)
    assert (record["served_version"], record["served_vectors"]) == (1, first["vectors"]), \
        "the record says search still serves version 1"
    assert stored_vectors(stack, api_a.tenant, document_id) == first["vectors"]
    hits = [hit for hit in api_a.search(TOPIC, top_k=10) if hit["document_id"] == document_id]
    assert hits, "search agrees: version 1's chunks are still found"
    assert task_state(api_a, reprocess["task_id"])["state"] in ("CANCELLED", "SUCCESS")
