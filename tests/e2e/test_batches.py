"""A batch through the real pipeline: five small text files in one POST /v1/batches (one
of them refused), and GET /v1/batches/{id} follows them until every one has completed.

Real stack (the session's): gateway over HTTP, the three workers, Redis, LanceDB.
"""

import time
import uuid

from docflow.devstack import samples

TOPICS = [
    "Beekeepers in the valley weigh every hive before the first frost of autumn.",
    "The ferry timetable changes twice a year, when the river's ice breaks and forms.",
    "Glassblowers anneal each vase overnight so that it cools without cracking.",
    "Cartographers marked the shoals with soundings taken at the lowest spring tide.",
    "The observatory's clock was wound each Sunday by the assistant astronomer.",
]


def test_a_batch_of_text_files_completes_and_its_progress_says_so(stack, api_a, api_b):
    run = uuid.uuid4().hex[:8]  # bytes no earlier test of the session uploaded
    files = [("file", (f"batch-{n}.txt", samples.text([f"{topic} ({run})"] * 3)))
             for n, topic in enumerate(TOPICS)]
    files.insert(2, ("file", ("empty.txt", b"")))
    response = api_a.http.post("/v1/batches", files=files, data={"metadata": '{"source": "e2e-batch"}'})
    assert response.status_code == 202, response.text
    answer = response.json()
    entries = answer["documents"]
    assert [e["filename"] for e in entries][2] == "empty.txt"
    assert entries[2]["document_id"] is None and entries[2]["error"]["code"] == "empty_file"
    ids = [e["document_id"] for e in entries if e["document_id"]]
    assert len(set(ids)) == 5

    deadline = time.monotonic() + 240
    seen_progress = []
    while True:
        progress = api_a.http.get(f"/v1/batches/{answer['batch_id']}")
        assert progress.status_code == 200, progress.text
        state = progress.json()
        seen_progress.append(state["progress"])
        if state["finished"]:
            break
        assert time.monotonic() < deadline, f"batch not finished: {state}"
        time.sleep(0.5)

    assert state["counts"]["completed"] == 5, state["counts"]
    assert (state["total"], state["files"], state["rejected"], state["progress"]) == (5, 6, 1, 100)
    assert seen_progress == sorted(seen_progress), "the batch's progress only moves forward"
    for document_id in ids:
        record = api_a.document(document_id)
        assert record["status"] == "completed" and record["metadata"] == {"source": "e2e-batch"}
    assert api_b.http.get(f"/v1/batches/{answer['batch_id']}").status_code == 404
    hits = api_a.search(f"beekeepers weigh every hive {run}", top_k=3, filter={"source": "e2e-batch"})
    assert hits and hits[0]["document_id"] == ids[0]
