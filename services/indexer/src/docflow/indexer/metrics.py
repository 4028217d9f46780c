"""The indexer's index-health and webhook metrics (docs/metrics.md), in the workers' shared registry.

Written by the maintenance worker after each run (`record_health`), served by that
worker's metrics port like every other worker metric (multiprocess mode). Unlike the
shared metrics these carry a `tenant` label: index health is per tenant table, and
tenants are few (one per API key), not one per document.

Gauges keep the most recent value any process wrote (`mostrecent`): the figures
describe a table, not a process, so a pool child that exits must not take them away.
"""

from prometheus_client import Counter, Gauge, Histogram

from docflow.shared.metrics import REGISTRY

_MODE = "mostrecent"
INDEX_ROWS = Gauge("docflow_index_rows", "Chunks in the tenant's index table", ("tenant",),
                   multiprocess_mode=_MODE, registry=REGISTRY)
INDEX_FRAGMENTS = Gauge("docflow_index_fragments", "Data fragments of the tenant's table (compaction merges them)",
                        ("tenant",), multiprocess_mode=_MODE, registry=REGISTRY)
INDEX_VERSIONS = Gauge("docflow_index_versions", "Table versions kept on disk (cleanup removes old ones)",
                       ("tenant",), multiprocess_mode=_MODE, registry=REGISTRY)
INDEX_UNINDEXED_ROWS = Gauge("docflow_index_unindexed_rows",
                             "Chunks not yet covered by the vector index (all of them while it has none)",
                             ("tenant",), multiprocess_mode=_MODE, registry=REGISTRY)
LAST_MAINTENANCE = Gauge("docflow_index_last_maintenance_timestamp_seconds",
                         "When the tenant's last maintenance run finished (Unix time)", ("tenant",),
                         multiprocess_mode=_MODE, registry=REGISTRY)
# Labelled, like every metric in the shared registry: an unlabelled one would open its
# value file at import, before the worker empties the multiprocess folder.
MAINTENANCE_SECONDS = Histogram("docflow_index_maintenance_duration_seconds",
                                "Run time of one tenant's maintenance run", ("outcome",),
                                buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800),
                                registry=REGISTRY)
# Counted where maintenance counts them (MaintenanceSchedule.note_writes), by the
# document worker: with the last-maintenance time, an alert tells a tenant whose
# writes go unmaintained from one that is merely quiet.
INDEX_WRITES = Counter("docflow_index_writes_total",
                       "Index writes (a document indexed, its vectors deleted, its metadata rewritten) "
                       "counted towards the tenant's next maintenance run", ("tenant",), registry=REGISTRY)
MAINTENANCE_RUNS = Counter("docflow_index_maintenance_runs_total",
                           "Maintenance runs by outcome: ok, failed, busy (another run held the "
                           "tenant's lock), skipped (nothing to maintain)", ("outcome",), registry=REGISTRY)


def record_health(tenant: str, health: dict[str, int], finished_at: float) -> None:
    INDEX_ROWS.labels(tenant).set(health["rows"])
    INDEX_FRAGMENTS.labels(tenant).set(health["fragments"])
    INDEX_VERSIONS.labels(tenant).set(health["versions"])
    INDEX_UNINDEXED_ROWS.labels(tenant).set(health["unindexed_rows"])
    LAST_MAINTENANCE.labels(tenant).set(finished_at)


# --- webhook deliveries (the notify worker, docflow.indexer.webhooks) --------------------
WEBHOOK_OUTCOMES = ("delivered", "retried", "dead_lettered", "refused", "dropped")
WEBHOOK_DELIVERIES = Counter("docflow_webhook_deliveries_total",
                             "Webhook delivery tries by outcome: delivered (2xx), retried (failed, tried "
                             "again later), dead_lettered (the last try failed), refused (the URL's address "
                             "is not allowed), dropped (the webhook was deleted)", ("outcome",),
                             registry=REGISTRY)
WEBHOOK_ATTEMPT_SECONDS = Histogram("docflow_webhook_attempt_duration_seconds",
                                    "Time of one delivery try, connect to answer, by outcome "
                                    "(delivered, failed)",
                                    ("outcome",), buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                    registry=REGISTRY)
WEBHOOK_EVENTS_DISPATCHED = Counter("docflow_webhook_events_dispatched_total",
                                    "Final events the dispatcher turned into deliveries, by event type",
                                    ("event",), registry=REGISTRY)
