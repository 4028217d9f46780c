"""The alert rules in deploy/helm/docflow/files/rules: valid for Prometheus, unit-tested
with promtool (each alert fires and stays quiet), and what the chart ships."""

import importlib.util
import subprocess

import yaml
from observability_support import CHART, REPO, RULE_FILES, RULE_TESTS, rule_groups, rules

REQUIRED_ALERTS = {
    "DocflowQueueBacklogHigh",          # backlog above a threshold for 10 minutes
    "DocflowEndToEndLatencyHigh",       # p95 end-to-end latency above 5 minutes
    "DocflowStageWithoutWorker",        # no worker up for a stage that has backlog
    "DocflowDocumentFailureRateHigh",   # failure rate above 1 %
    "DocflowDeadLettersGrowing",        # dead letters growing
    "DocflowIndexMaintenanceStale",     # a tenant written for an hour without maintenance
    "DocflowIndexMaintenanceFailing",   # maintenance runs only fail
    "DocflowIndexFragmentsHigh",        # compaction not keeping up
    "DocflowIndexUnindexedRowsHigh",    # vector index missing or behind
    "DocflowWebhookDeliveriesFailing",  # most webhook tries fail
    "DocflowWebhookDeliveriesDeadLettered",  # webhook deliveries given up
}


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_rule_files_pass_promtool_check(promtool):
    assert RULE_FILES, "no rule files in files/rules/"
    result = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool):
    assert RULE_TESTS, "no promtool tests in files/rules/tests/"
    result = run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_required_alerts_exist_with_a_severity_and_a_summary():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert REQUIRED_ALERTS <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_alert_is_tested_both_firing_and_quiet():
    cases: dict[str, set[bool]] = {}
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text())
        for test in spec["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for rule in rules():
        if "alert" in rule:
            assert cases.get(rule["alert"]) == {True, False}, \
                f"{rule['alert']} needs a promtool case where it fires and one where it does not"


def test_the_chart_ships_exactly_these_rule_groups():
    spec = importlib.util.spec_from_file_location("docflow_deploy_render", REPO / "deploy" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    (rule,) = [obj for obj in render.manifests() if obj["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == rule_groups()
    plain = yaml.safe_load((REPO / "deploy" / "k8s" / "prometheusrule.yaml").read_text())
    assert plain["spec"]["groups"] == rule_groups(), "deploy/k8s is stale: run `make manifests`"
    assert CHART.joinpath("files", "rules", "tests") not in {p.parent for p in RULE_FILES}
