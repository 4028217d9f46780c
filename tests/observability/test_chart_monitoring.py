"""What the Helm chart does for metrics: workers get a fresh multiprocess directory set
before Python starts, the gateway does not, and the dashboards ship verbatim."""

import importlib.util
import json

import pytest
from observability_support import DASHBOARDS, REPO

WORKERS = ("extractor", "embedder", "indexer")


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    spec = importlib.util.spec_from_file_location("docflow_deploy_render", REPO / "deploy" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    return render.manifests()


def deployment(manifests, component: str) -> dict:
    return next(o for o in manifests if o["kind"] == "Deployment"
                and o["metadata"]["name"] == f"docflow-{component}")


@pytest.mark.parametrize("service", WORKERS)
def test_each_worker_pod_has_its_own_in_memory_multiprocess_directory(manifests, service):
    pod = deployment(manifests, service)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = env["PROMETHEUS_MULTIPROC_DIR"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == path)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["medium"] == "Memory", "per pod, never shared between pods"


def test_the_gateway_does_not_use_multiprocess_mode(manifests):
    (container,) = deployment(manifests, "gateway")["spec"]["template"]["spec"]["containers"]
    assert "PROMETHEUS_MULTIPROC_DIR" not in {e["name"] for e in container.get("env", [])}


def test_the_dashboards_ship_verbatim(manifests):
    configmap = next(o for o in manifests if o["kind"] == "ConfigMap"
                     and o["metadata"]["name"] == "docflow-dashboards")
    assert set(configmap["data"]) == {path.name for path in DASHBOARDS}
    for path in DASHBOARDS:
        assert json.loads(configmap["data"][path.name]) == json.loads(path.read_text())
