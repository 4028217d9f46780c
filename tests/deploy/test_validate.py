"""Every rendered object is valid Kubernetes: core kinds against the API schemas that
kubernetes-validate bundles (--strict: unknown fields are errors) for the oldest
supported version and the newest it knows; custom resources against their CRDs'
published schemas in ../shared/schemas (kubernetes-validate skips those)."""

import copy
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_support import SCENARIOS

OLDEST_SUPPORTED = "1.29.0"  # Chart.yaml kubeVersion
KUBERNETES_VERSIONS = [OLDEST_SUPPORTED, kubernetes_validate.latest_version()]

PROMETHEUS_OPERATOR = "prometheus-operator/monitoring.coreos.com"
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda/keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda/keda.sh_triggerauthentications.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): f"{PROMETHEUS_OPERATOR}_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): f"{PROMETHEUS_OPERATOR}_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): f"{PROMETHEUS_OPERATOR}_prometheusrules.yaml",
}


def is_custom(obj: dict) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected, as kubernetes-validate --strict does
    for core kinds: the API server would silently prune a misspelt field."""
    schema = copy.deepcopy(schema)

    def tighten(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)

    tighten(schema)
    return schema


@cache
def crd_validator(schemas_dir: Path, api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((schemas_dir / CUSTOM_RESOURCES[(api_version, kind)]).read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = strict(served["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_core_objects_validate_strictly(scenario_manifests, scenario, version):
    errors = []
    for obj in scenario_manifests[scenario]:
        if is_custom(obj):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as error:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_custom_resources_validate_against_their_crds(scenario_manifests, scenario, crd_schemas_dir):
    errors = []
    for obj in scenario_manifests[scenario]:
        if not is_custom(obj):
            continue
        validator = crd_validator(crd_schemas_dir, obj["apiVersion"], obj["kind"])
        for error in validator.iter_errors(obj):
            path = ".".join(str(p) for p in error.absolute_path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
    assert not errors, "\n".join(errors)


def test_every_custom_kind_is_rendered_and_checked(scenario_manifests):
    rendered = {(o["apiVersion"], o["kind"]) for objects in scenario_manifests.values() for o in objects}
    assert set(CUSTOM_RESOURCES) <= rendered
    unknown_groups = {api for api, _ in rendered if "." in api.split("/")[0]} - {
        api for api, _ in CUSTOM_RESOURCES} - {
        "apps/v1", "policy/v1", "networking.k8s.io/v1", "autoscaling/v2"}
    assert not unknown_groups, f"custom API groups without a schema check: {unknown_groups}"


def test_the_strict_crd_check_catches_a_misspelt_field(crd_schemas_dir, default_manifests):
    scaled = copy.deepcopy(next(o for o in default_manifests if o["kind"] == "ScaledObject"))
    scaled["spec"]["advanced"]["horizontalPodAutoscalerconfig"] = scaled["spec"]["advanced"].pop(
        "horizontalPodAutoscalerConfig")
    validator = crd_validator(crd_schemas_dir, scaled["apiVersion"], "ScaledObject")
    assert any("horizontalPodAutoscalerconfig" in e.message for e in validator.iter_errors(scaled))
