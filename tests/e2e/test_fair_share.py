"""Fair sharing on the real stack: one tenant's import does not hold up another's upload.

Tenant A hands in 60 documents in one batch, more files than
DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT, so all of them go to the stages' bulk lanes.
Tenant B then uploads one document, which takes the document queues, which the workers
take turn about with the bulk lanes.
B's document must complete while at least half of A's are still not completed: an
ordering, not a time (on FIFO queues B's would have waited for all 60). Then A's import
completes too, through the bulk lanes of every stage. (The time it buys is measured by
`make bench`, bench/fair_share.py.)

Real stack (the session's): gateway over HTTP, the three workers, Redis, LanceDB.
"""

import time
import uuid

import redis

from docflow.devstack import samples
from docflow.devstack.faults import wait_for
from docflow.shared.names import BULK_QUEUE_OF_STAGE, Stage

IMPORT_SIZE = 60


def completed(api, document_ids: list[str]) -> int:
    return sum(1 for document_id in document_ids if api.document(document_id)["status"] == "completed")


def test_another_tenants_upload_completes_before_a_bulk_import_is_half_done(stack, api_a, api_b):
    run = uuid.uuid4().hex[:8]  # bytes no earlier test of the session uploaded
    page = "Ledger page {n} of the harbour archive ({run})."
    files = [("file", (f"import-{n}.txt", samples.text([page.format(n=n, run=run)] * 3)))
             for n in range(IMPORT_SIZE)]
    response = api_a.http.post("/v1/batches", files=files)
    assert response.status_code == 202, response.text
    imported = [entry["document_id"] for entry in response.json()["documents"]]
    assert len(set(imported)) == IMPORT_SIZE and all(imported)
    client = redis.Redis.from_url(stack.redis_url)
    assert client.llen(BULK_QUEUE_OF_STAGE[Stage.EXTRACT].value) > 0, "a big batch waits in the bulk lane"

    single = api_b.upload("one-page.txt", samples.text([f"The lighthouse keeper's single page ({run})."]))
    record = api_b.wait_final(single, timeout=240)
    done_by_then = completed(api_a, imported)

    assert record["status"] == "completed", record["error"]
    assert done_by_then <= IMPORT_SIZE // 2, (
        f"tenant B's upload completed only after {done_by_then} of tenant A's {IMPORT_SIZE} documents")

    # The import is not starved: every document completes, through every stage's bulk lane.
    wait_for(lambda: completed(api_a, imported) == IMPORT_SIZE, 600, "tenant A's whole import", interval=1)
    assert all(client.llen(queue.value) == 0 for queue in BULK_QUEUE_OF_STAGE.values())
