"""The dashboard and the alert rules, proven against a real Prometheus scraping the real
services of the local stack.

Prometheus (Debian's package) scrapes the gateway and the three workers every second
and loads the chart's rule files. After documents of several kinds have gone through
— one OCR'd, one failing, one refused at upload — every query of the dashboard must
parse and return at least one series, every metric the dashboard and the rules
name must be among those scraped, and every rule must load and evaluate cleanly.
"""

import importlib.util
import time
from pathlib import Path

import httpx
import pytest

from docflow.devstack import samples
from docflow.devstack.faults import wait_for
from docflow.devstack.prometheus import LocalPrometheus
from docflow.shared.celery_app import create_celery_app
from docflow.shared.names import Stage, Task, WorkerRole
from docflow.shared.settings import Settings

SUPPORT = Path(__file__).resolve().parents[1] / "observability" / "observability_support.py"
_spec = importlib.util.spec_from_file_location("observability_support_e2e", SUPPORT)
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

JOBS = {"gateway", "extractor", "embedder", "indexer"}



@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    server = LocalPrometheus(stack, tmp_path_factory.mktemp("prometheus"), support.RULE_FILES).start()
    try:
        wait_for(lambda: {t["labels"]["job"] for t in server.targets() if t["health"] == "up"} == JOBS,
                 60, "Prometheus to scrape the gateway and the three workers")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def traffic(prometheus, stack, api_a):
    """Documents through every stage, an OCR'd image, a failure, a refusal and a search."""
    started = time.monotonic()
    documents = {
        "text": api_a.upload("metrics.txt", samples.text(["Prometheus scrapes every service each second."])),
        "pdf": api_a.upload("metrics.pdf", samples.pdf(["Page one of the metrics report.", "Page two."])),
        "png": api_a.upload("metrics.png", samples.png("Dashboards are code")),
        "corrupt": api_a.upload("broken.pdf", b"%PDF-1.7\n" + b"\x00 not really a pdf " * 20),
    }
    refused = api_a.http.post("/v1/documents", files={"file": ("blob.bin", b"\x00\x01\x02\xff" * 64)})
    assert refused.status_code == 415
    records = {kind: api_a.wait_final(document_id) for kind, document_id in documents.items()}
    assert [kind for kind, r in records.items() if r["status"] != "completed"] == ["corrupt"], records
    assert api_a.search("metrics report", top_k=1)
    # A maintenance run now (the writes above would send one only after
    # DOCFLOW_INDEX_MAINTENANCE_DELAY_SECONDS): the index-health series come from it.
    producer = create_celery_app("test-prometheus", Settings(redis_url=stack.redis_url))
    try:
        producer.send_task(Task.MAINTAIN.value, args=[api_a.tenant], ignore_result=True)
    finally:
        producer.close()
    maintenance = stack.metrics_url(Stage.INDEX, WorkerRole.MAINTENANCE)
    wait_for(lambda: "docflow_index_last_maintenance_timestamp_seconds{" in httpx.get(maintenance, timeout=5).text,
             120, "a maintenance run of the tenant's table")
    time.sleep(3)  # a few scrapes (one per second) after the last task counted
    return records, started


def window_since(started: float) -> str:
    """A range that covers all of the test's traffic (rates over less might miss it)."""
    return f"{int(time.monotonic() - started) + 30}s"


def test_every_dashboard_query_returns_data(prometheus, traffic):
    _, started = traffic
    variables = {**support.ALL_SELECTED, "__rate_interval": window_since(started)}
    empty, errors, checked = [], [], 0
    for path in support.DASHBOARDS:
        for title, expr in support.dashboard_targets(support.load_dashboard(path)):
            query = support.substitute(expr, variables)
            assert "$" not in query, f"unsubstituted variable in {title}: {query}"
            try:
                result = prometheus.query(query)
            except RuntimeError as exc:  # a parse or evaluation error
                errors.append(f"{title}: {exc}")
                continue
            checked += 1
            if not result:
                empty.append(f"{title}: {query}")
    assert not errors, "\n".join(errors)
    assert not empty, "queries without a single series:\n" + "\n".join(empty)
    assert checked >= 30


def test_every_metric_the_dashboard_and_alerts_name_is_scraped(prometheus, traffic):
    scraped = prometheus.metric_names()
    missing = {name: sorted(where) for name, where in support.referenced_metrics().items()
               if name not in scraped}
    assert not missing, f"not among the scraped series: {missing}"


def test_the_alert_rules_load_and_evaluate_without_error(prometheus, traffic):
    expected = {group["name"]: [rule.get("alert") or rule.get("record") for rule in group["rules"]]
                for group in support.rule_groups()}
    def evaluated():
        groups = prometheus.rule_groups()
        return groups if all(rule["health"] == "ok" for group in groups for rule in group["rules"]) else None

    groups = wait_for(evaluated, 30, "every rule to be evaluated")
    assert {group["name"]: [rule["name"] for rule in group["rules"]] for group in groups} == expected
    for group in groups:
        for rule in group["rules"]:
            assert not rule.get("lastError"), (rule["name"], rule["lastError"])
    # A healthy stack that just drained its queues has nothing to alert on yet.
    firing = [alert["labels"]["alertname"] for group in groups for rule in group["rules"]
              for alert in rule.get("alerts", []) if alert["state"] == "firing"]
    assert firing == []


def test_workers_report_their_own_stage_and_queue_metrics_come_from_the_gateway(prometheus, traffic):
    up = {(r["metric"]["job"], r["metric"]["stage"]) for r in prometheus.query("docflow_worker_up == 1")}
    assert up == {("extractor", "extract"), ("embedder", "embed"), ("indexer", "index")}
    assert {r["metric"]["job"] for r in prometheus.query("docflow_queue_backlog")} == {"gateway"}
    e2e = prometheus.query("sum(docflow_document_processing_seconds_count)")
    assert float(e2e[0]["value"][1]) >= 3
