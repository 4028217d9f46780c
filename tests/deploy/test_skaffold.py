"""skaffold.yaml: one artifact per service built from the repository root, deployed by
the Helm chart with the images just built; its profiles render valid releases."""

import copy

import pytest
import yaml
from deploy_support import QUERY_WORKERS, REPO, SERVICES, containers, named, of_kind


@pytest.fixture(scope="module")
def skaffold() -> dict:
    return yaml.safe_load((REPO / "skaffold.yaml").read_text())


def apply_patches(config: dict, patches: list[dict]) -> dict:
    """The JSON-patch subset skaffold profiles use here (add, replace)."""
    config = copy.deepcopy(config)
    for patch in patches:
        *parents, last = patch["path"].strip("/").split("/")
        node = config
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if patch["op"] == "add" and last == "-":
            node.append(patch["value"])
        elif patch["op"] in {"add", "replace"}:
            if patch["op"] == "replace":
                assert last in node, f"replace of a missing path {patch['path']}"
            node[last] = patch["value"]
        else:
            raise AssertionError(f"unsupported patch op {patch['op']}")
    return config


def release_values(config: dict) -> dict:
    """The values skaffold would pass to helm: values files, then --set of the templates
    with skaffold's IMAGE_* variables filled in."""
    (release,) = config["deploy"]["helm"]["releases"]
    values: dict = {}
    for path in release.get("valuesFiles", []):
        merge(values, yaml.safe_load((REPO / path).read_text()))
    for dotted, template in release.get("setValueTemplates", {}).items():
        text = template
        for service in SERVICES:
            key = f"docflow_{service}"
            text = (text.replace(f"{{{{.IMAGE_REPO_{key}}}}}", f"registry.local/docflow-{service}")
                        .replace(f"{{{{.IMAGE_TAG_{key}}}}}", "abc123")
                        .replace(f"{{{{.IMAGE_DIGEST_{key}}}}}", "sha256:" + "0" * 64))
        assert "{{" not in text, f"unknown template in {dotted}: {template}"
        *parents, last = dotted.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = text
    return values


def merge(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def profile(skaffold: dict, name: str) -> dict:
    return next(p for p in skaffold["profiles"] if p["name"] == name)


def test_one_artifact_per_service_built_from_the_repository_root(skaffold):
    artifacts = skaffold["build"]["artifacts"]
    # One Dockerfile for all; each image's own build args (test_images.py checks them).
    assert {a["image"]: (a["docker"]["dockerfile"], a["docker"]["buildArgs"]["SERVICE"]) for a in artifacts} == {
        f"docflow-{s}": ("services/Dockerfile", s) for s in SERVICES}
    assert all(a["context"] == "." for a in artifacts), "every image needs shared/"
    assert all((REPO / a["docker"]["dockerfile"]).is_file() for a in artifacts)


def test_deploys_through_the_chart_with_the_built_images(skaffold, chart):
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]).resolve() == chart.CHART
    objects = chart.manifests(release_values(skaffold))
    for service in SERVICES:
        (container,) = containers(named(objects, "Deployment", f"docflow-{service}"))
        assert container["image"] == f"registry.local/docflow-{service}:abc123@sha256:{'0' * 64}"


def test_dev_profile_runs_one_replica_of_each_local_image(skaffold, chart):
    dev = profile(skaffold, "dev")
    assert {"command": "dev"} in dev["activation"]
    objects = chart.manifests(release_values(apply_patches(skaffold, dev["patches"])))
    for service in SERVICES:
        deployment = named(objects, "Deployment", f"docflow-{service}")
        assert deployment["spec"]["replicas"] == 1
        (container,) = containers(deployment)
        assert container["image"] == f"registry.local/docflow-{service}:abc123"
        assert container["imagePullPolicy"] == "IfNotPresent"
    assert not of_kind(objects, "ScaledObject") and not of_kind(objects, "HorizontalPodAutoscaler")
    assert not of_kind(objects, "ServiceMonitor"), "a local cluster has no Prometheus Operator CRDs"


def test_no_keda_profile_swaps_scaled_objects_for_cpu_hpas(skaffold, chart):
    no_keda = profile(skaffold, "no-keda")
    objects = chart.manifests(release_values(apply_patches(skaffold, no_keda["patches"])))
    assert not of_kind(objects, "ScaledObject")
    # The query-only workers get one too (their ScaledObjects are swapped likewise).
    assert {h["metadata"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")} == {
        f"docflow-{s}" for s in (*SERVICES, *QUERY_WORKERS)}
