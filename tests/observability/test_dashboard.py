"""The Grafana dashboard "docflow pipeline": what it shows, that every query parses, and
that it (and every alert) uses only metrics the services export."""

import subprocess

import yaml
from observability_support import (ALL_SELECTED, DASHBOARDS, RULE_TESTS, dashboard_targets,
                                   exported_metric_names, load_dashboard, metric_names, referenced_metrics,
                                   substitute)

PIPELINE = next((path for path in DASHBOARDS if path.name == "docflow-pipeline.json"), None)


def pipeline() -> dict:
    assert PIPELINE is not None, "deploy/helm/docflow/files/dashboards/docflow-pipeline.json is missing"
    return load_dashboard(PIPELINE)


def test_the_dashboard_covers_what_operators_watch():
    dashboard = pipeline()
    assert dashboard["title"] == "docflow pipeline"
    titles = {title for title, _ in dashboard_targets(dashboard)}
    for wanted in ("Throughput per stage", "Backlog per queue", "Task run time per stage",
                   "End-to-end latency (accepted → completed)", "Task failure ratio per stage",
                   "Errors by code", "Retries per stage", "Dead letters", "Worker replicas per stage",
                   "Scrape targets up"):
        assert wanted in titles, wanted
    latency = [expr for title, expr in dashboard_targets(dashboard) if title == "Task run time per stage"]
    assert {expr.split(",")[0] for expr in latency} == {
        "histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99"}


def test_the_dashboard_shows_every_index_health_metric_the_indexer_exports():
    from docflow.indexer import metrics as index_metrics

    exported = {metric._name for metric in vars(index_metrics).values()
                if hasattr(metric, "_name") and metric._name.startswith("docflow_index_")}
    shown = {name for _, expr in dashboard_targets(pipeline()) for name in metric_names(expr)}
    missing = {name for name in exported
               if not any(shown_name == name or shown_name.startswith(name + "_") for shown_name in shown)}
    assert not missing, f"index-health metrics without a panel: {sorted(missing)}"
    titles = {title for title, _ in dashboard_targets(pipeline())}
    assert {"Fragments per tenant", "Chunks outside the vector index", "Time since last maintenance",
            "Maintenance runs by outcome", "Maintenance run time"} <= titles


def test_the_dashboard_shows_webhook_deliveries_their_latency_and_what_is_pending():
    from docflow.indexer import metrics as index_metrics

    exported = {metric._name for metric in vars(index_metrics).values()
                if hasattr(metric, "_name") and metric._name.startswith("docflow_webhook_")}
    assert exported, "the notify worker's metrics moved"
    targets = dashboard_targets(pipeline())
    shown = {name for _, expr in targets for name in metric_names(expr)}
    missing = {name for name in exported
               if not any(shown_name == name or shown_name.startswith(name + "_") for shown_name in shown)}
    assert not missing, f"webhook metrics without a panel: {sorted(missing)}"
    pending = [expr for title, expr in targets if title == "Webhook deliveries pending"]
    assert pending and all('queue="docflow.webhooks"' in expr for expr in pending)
    assert {"Webhook deliveries by outcome", "Webhook try latency"} <= {title for title, _ in targets}


def test_every_query_is_scoped_by_the_namespace_and_job_variables():
    dashboard = pipeline()
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "job", "gateway_job"} <= variables
    for title, expr in dashboard_targets(dashboard):
        assert 'namespace=~"$namespace"' in expr, title
        assert 'job=~"$job"' in expr or 'job=~"$gateway_job"' in expr, title
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_every_query_parses(promtool, tmp_path):
    """promtool parses each query as the expression of a recording rule."""
    records = [{"record": f"dashboard:query_{i}", "expr": substitute(expr, ALL_SELECTED)}
               for path in DASHBOARDS for i, (_, expr) in enumerate(dashboard_targets(load_dashboard(path)))]
    rules_file = tmp_path / "dashboard-queries.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_and_alerts_use_only_metrics_the_services_export(redis_server):
    exported = exported_metric_names(redis_server.url)
    unknown = {name: sorted(where) for name, where in referenced_metrics().items() if name not in exported}
    assert not unknown, f"referenced but exported by no service: {unknown}"


def test_promtool_tests_feed_the_rules_real_metric_names(redis_server):
    exported = exported_metric_names(redis_server.url)
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for series in test.get("input_series", []):
                name = series["series"].split("{")[0]
                assert name in exported, f"{path.name}: {name}"
