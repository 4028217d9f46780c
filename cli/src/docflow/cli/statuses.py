"""A document's statuses, as the gateway's API reports them.

The CLI installs without docflow-shared (typer, rich and httpx only), so it keeps its
own copy of these strings; cli/tests/test_statuses.py pins them to the API's enum
(docflow.shared.pipeline_shape.DocumentStatus), so the two cannot drift apart.
"""

QUEUED = "queued"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
# Every status, in the order a document moves through them.
STATUSES = (QUEUED, "extracting", "embedding", "indexing", COMPLETED, FAILED, CANCELLED)
FINAL_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})
