"""What the deploy tests share: the configurations the chart must support, and small
queries over rendered Kubernetes objects.

conftest.py registers this module as `deploy_support`: pytest runs with
--import-mode=importlib, which puts no test directory on sys.path.
"""

from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# CI checks the repository out with shared/ beside it: <repo>/../shared.
SHARED = REPO.parent / "shared"

WORKERS = ("extractor", "embedder", "indexer")
SERVICES = ("gateway", *WORKERS)
# The other worker Deployments, `<service>-<role>` (docflow.shared.names.WorkerRole):
# query-only workers (autoscaled on their query queue), the maintenance worker and the
# notify worker (webhook deliveries).
QUERY_WORKERS = ("embedder-query", "indexer-query")
MAINTENANCE_WORKERS = ("indexer-maintenance",)
NOTIFY_WORKERS = ("indexer-notify",)
ALL_WORKERS = (*WORKERS, *QUERY_WORKERS, *MAINTENANCE_WORKERS, *NOTIFY_WORKERS)
AUTOSCALED_WORKERS = (*WORKERS, *QUERY_WORKERS)

# Value sets the chart must render, validate and pass checkov with.
SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "keda-off": {"keda": {"enabled": False}},
    "external-redis": {
        "redis": {
            "bundled": False,
            "external": {"url": "rediss://redis.example.internal:6380/2"},
            "auth": {"existingSecret": "docflow-external-redis", "existingSecretPasswordKey": "password"},
        },
    },
    "external-redis-mutual-tls-acl-user": {
        "redis": {
            "bundled": False,
            "external": {"url": "rediss://redis.example.internal:6380/0"},
            "auth": {"existingSecret": "docflow-external-redis", "username": "docflow"},
            "tls": {"existingSecret": "docflow-redis-tls", "clientCertificate": True},
        },
        "gateway": {"adminApiKeys": {"existingSecret": "docflow-admin"}},
    },
    "monitoring-off": {
        "monitoring": {
            "serviceMonitors": {"enabled": False},
            "prometheusRule": {"enabled": False},
            "grafanaDashboards": {"enabled": False},
        },
    },
    "pinecone": {
        "vectorStore": {
            "backend": "pinecone",
            "pinecone": {"existingSecret": "docflow-pinecone", "indexHost": "docflow-abc123.svc.pinecone.io"},
        },
        "storage": {"s3": {"existingSecret": "docflow-s3"}},
    },
    "lancedb-on-s3-compatible": {
        "storage": {"s3": {"endpointUrl": "http://minio.storage.svc:9000", "existingSecret": "docflow-s3"}},
        "networkPolicy": {"extraEgress": [{"ports": [{"port": 9000, "protocol": "TCP"}]}]},
    },
    "local-storage-no-autoscaling": {
        "storage": {"backend": "local", "local": {"accessModes": ["ReadWriteOnce"]}},
        "extractor": {"autoscaling": {"enabled": False}},
        "embedder": {"autoscaling": {"enabled": False}, "query": {"autoscaling": {"enabled": False}}},
        "indexer": {"autoscaling": {"enabled": False}, "query": {"autoscaling": {"enabled": False}}},
        "gateway": {"autoscaling": {"enabled": False}},
    },
    "ingress-openai-no-auth": {
        "gateway": {
            "ingress": {"enabled": True, "className": "nginx",
                        "tls": [{"hosts": ["docflow.example.com"], "secretName": "docflow-tls"}]},
            "networkPolicyFrom": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "ingress-nginx"}}}],
        },
        "networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]},
        "embedder": {"provider": "openai", "openai": {"existingSecret": "docflow-openai"}},
        "redis": {"auth": {"enabled": False}},
    },
    "embedder-on-gpu": {
        "embedder": {"gpu": {"enabled": True, "nodeSelector": {"nvidia.com/gpu.present": "true"}}},
    },
}

POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[dict], kind: str, name: str) -> dict:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] in POD_OWNERS]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> Iterator[dict]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def component(obj: dict) -> str | None:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def env_value(container: dict, name: str) -> str | None:
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry.get("value")
    return None


def env_names(container: dict) -> list[str]:
    return [entry["name"] for entry in container.get("env", [])]


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels/matchExpressions) selects these labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def selected_workloads(objects: list[dict], selector: dict) -> list[dict]:
    return [w for w in workloads(objects) if selects(selector, pod_labels(w))]


def container_port(container: dict, name_or_number) -> int | None:
    for port in container.get("ports", []):
        if port.get("name") == name_or_number or port["containerPort"] == name_or_number:
            return port["containerPort"]
    return None
