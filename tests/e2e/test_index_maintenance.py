"""Index maintenance in the background, through the real maintenance worker.

A stack of its own (real redis-server, Celery workers, gateway, LanceDB) with
maintenance due every few index writes and a vector-index threshold a few hundred
chunks small: while documents keep arriving and searches keep being answered, the
indexer's maintenance worker (`-Q docflow.maintenance.index`, its own process and
metrics port) compacts the tenant's table, builds its vector index and cleans old
versions; the index-health metrics say so on that worker's metrics port, and only
there. The hash embedder keeps the stack light; nothing here is mocked.
"""

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from docflow.devstack import samples
from docflow.shared.names import Stage, WorkerRole

from .conftest import KEY_A, STACK_ENV, TENANT_A, Api, own_stack

MIN_ROWS = 300
DOCUMENTS = 12
ENV = {
    **STACK_ENV,
    "DOCFLOW_EMBEDDER": "hash",
    "DOCFLOW_INDEX_MAINTENANCE_WRITES": "3",
    "DOCFLOW_INDEX_MAINTENANCE_DELAY_SECONDS": "1",
    "DOCFLOW_VECTOR_INDEX_MIN_ROWS": str(MIN_ROWS),
    "DOCFLOW_INDEX_VERSION_RETENTION_SECONDS": "1",
}


@pytest.fixture(scope="module")
def maintained(tmp_path_factory):
    with own_stack(tmp_path_factory, "maintained", ENV) as local:
        yield local


def samples_of(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample a worker serves, by (name, sorted labels)."""
    text = httpx.get(url, timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def document_text(n: int) -> bytes:
    # ~40 paragraphs: a few dozen chunks per document, so a dozen pass MIN_ROWS.
    return samples.text([f"Report {n} part {p}: " + " ".join(f"harbour{n}x{p}x{w} tide ledger" for w in range(30))
                         for p in range(40)])


def test_maintenance_runs_in_the_background_while_uploads_and_searches_continue(maintained):
    api = Api(maintained.gateway_url, KEY_A, TENANT_A)
    maintenance_metrics = maintained.metrics_url(Stage.INDEX, WorkerRole.MAINTENANCE)
    assert maintenance_metrics != maintained.metrics_url(Stage.INDEX)

    documents, searches = [], 0
    for n in range(DOCUMENTS):
        documents.append(api.upload(f"report-{n}.txt", document_text(n)))
        if n % 3 == 2:  # searches keep being answered while documents are indexed
            api.wait_final(documents[-1])
            assert api.search(f"harbour{n}x1x1 tide", top_k=3), "a search found nothing"
            searches += 1
    records = [api.wait_final(d) for d in documents]
    assert all(r["status"] == "completed" for r in records), records

    # The last writes schedule one more run (at most the delay later): wait for the
    # metrics to show a compacted table fully covered by a vector index.
    deadline = time.monotonic() + 120
    while True:
        found = samples_of(maintenance_metrics)
        rows = value(found, "docflow_index_rows", tenant=TENANT_A)
        fragments = value(found, "docflow_index_fragments", tenant=TENANT_A)
        unindexed = value(found, "docflow_index_unindexed_rows", tenant=TENANT_A)
        versions = value(found, "docflow_index_versions", tenant=TENANT_A)
        total_rows = sum(r.get("vectors") or 0 for r in records)
        # Compacted: a handful of fragments (a write landing beside a run adds one),
        # far fewer than the dozens of index commits.
        if rows == total_rows and fragments is not None and fragments <= DOCUMENTS // 3 and unindexed == 0:
            break
        assert time.monotonic() < deadline, (
            f"no maintained index after 120 s: rows={rows}/{total_rows} fragments={fragments} "
            f"unindexed={unindexed} versions={versions}")
        time.sleep(1)

    assert total_rows >= MIN_ROWS, "the documents must pass the vector-index threshold"
    ok_runs = value(found, "docflow_index_maintenance_runs_total", outcome="ok")
    assert ok_runs and ok_runs >= 1
    # Fewer fragments than index writes (each document is at least one commit).
    assert fragments < len(documents)

    # Old versions are cleaned up instead of piling up with every write. The run above
    # keeps the versions of its last second (the retention); a later run, past it,
    # leaves only the few commits made since. A few more small writes schedule one.
    time.sleep(2)
    for n in range(3):
        assert api.wait_final(api.upload(f"late-{n}.txt", samples.text([f"Late note {n} on the tide ledger."])))[
            "status"] == "completed"
    deadline = time.monotonic() + 120
    while True:
        found = samples_of(maintenance_metrics)
        versions = value(found, "docflow_index_versions", tenant=TENANT_A)
        if (value(found, "docflow_index_maintenance_runs_total", outcome="ok") or 0) > ok_runs \
                and versions is not None and versions < len(documents):
            break
        assert time.monotonic() < deadline, f"old versions never cleaned up: versions={versions}"
        time.sleep(1)
    assert value(found, "docflow_index_last_maintenance_timestamp_seconds", tenant=TENANT_A) > time.time() - 300
    assert value(found, "docflow_index_maintenance_duration_seconds_count", outcome="ok") >= 1

    # Maintenance ran in its own worker: the document indexer ran none of it.
    document_worker = samples_of(maintained.metrics_url(Stage.INDEX))
    assert not value(document_worker, "docflow_index_maintenance_runs_total", outcome="ok")

    # Searches still answer on the maintained (vector-indexed) table.
    assert api.search("harbour5x3x2 tide ledger", top_k=5)
    assert searches == DOCUMENTS // 3
