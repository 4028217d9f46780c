"""Reading the dashboards and alert rules that ship in the chart, and the metric names
the services export.

conftest.py registers this module as `observability_support` (pytest runs with
--import-mode=importlib, which puts no test directory on sys.path); the end-to-end
Prometheus test loads it by path.
"""

import json
import re
from pathlib import Path

import redis
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "docflow"
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
RULE_FILES = sorted((CHART / "files" / "rules").glob("*.yaml"))
RULE_TESTS = sorted((CHART / "files" / "rules" / "tests").glob("*.yaml"))

# Grafana's template variables, as "All" selects them, and its rate window.
ALL_SELECTED = {"namespace": ".*", "job": ".*", "gateway_job": ".*", "__rate_interval": "5m"}

_METRIC = re.compile(r"\b(docflow_[a-zA-Z0-9_]+)\b")
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("", "_sum", "_count"), "info": ("_info",), "unknown": ("",)}


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows keep theirs inside


def dashboard_targets(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [(panel["title"], target["expr"]) for panel in _panels(dashboard["panels"])
            for target in panel.get("targets", []) if target.get("expr")]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's `$name` / `${name}` variables replaced by values (longest names first)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr


def rule_groups() -> list[dict]:
    return [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]


def rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def referenced_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used (dashboard panels, alert rules)."""
    used: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        for title, expr in dashboard_targets(load_dashboard(path)):
            for name in metric_names(expr):
                used.setdefault(name, set()).add(f"{path.name}: {title}")
    for rule in rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"rule {rule.get('alert') or rule.get('record')}")
    return used


def sample_names(families) -> set[str]:
    """The names of the samples a collector exposes (a counter `x` exposes `x_total`)."""
    names = set()
    for family in families:
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return {name for name in names if not name.endswith("_created")}


def exported_metric_names(redis_url: str) -> set[str]:
    """Every metric name a docflow service exports, from the services' own registries:
    the workers' (docflow.shared.metrics, which the indexer's index-health metrics join
    when docflow.indexer.metrics is imported, as the indexer worker does), the
    gateway's, and the gateway's queue collector reading a real Redis."""
    from prometheus_client import REGISTRY

    import docflow.indexer.metrics  # noqa: F401  (registers the index-health metrics)
    from docflow.gateway.metrics import QueueCollector
    from docflow.shared import metrics

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return (sample_names(metrics.REGISTRY.collect()) | sample_names(REGISTRY.collect())
                | sample_names(QueueCollector(client, "docflow:").collect()))
    finally:
        client.close()
