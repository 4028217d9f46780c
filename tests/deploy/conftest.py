"""Fixtures for the deploy tests: the chart rendered offline by Helm's own engine
(helm-python-sdk, through deploy/render.py, the same code `make manifests` runs) for
every configuration the chart supports, and the CRD schemas in ../shared/schemas."""

import importlib.util
import sys
from pathlib import Path

import pytest


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# With --import-mode=importlib no test directory is on sys.path: register the helpers
# under a name the test modules import.
support = _load("deploy_support", Path(__file__).with_name("deploy_support.py"))
REPO, SHARED, SCENARIOS = support.REPO, support.SHARED, support.SCENARIOS


@pytest.fixture(scope="session")
def chart():
    """deploy/render.py: render(), manifests(), lint(), plain_manifests(), ..."""
    return _load("docflow_deploy_render", REPO / "deploy" / "render.py")


@pytest.fixture(scope="session")
def scenario_manifests(chart) -> dict[str, list[dict]]:
    """Scenario name -> every object the chart renders with those values."""
    return {name: chart.manifests(values) for name, values in SCENARIOS.items()}


@pytest.fixture(scope="session")
def default_manifests(scenario_manifests) -> list[dict]:
    return scenario_manifests["defaults"]


@pytest.fixture(scope="session")
def default_values(chart) -> dict:
    import yaml

    return yaml.safe_load((chart.CHART / "values.yaml").read_text())


@pytest.fixture(scope="session")
def crd_schemas_dir() -> Path:
    schemas = SHARED / "schemas"
    if not schemas.is_dir():
        pytest.fail(f"CRD schemas not found at {schemas}: CI checks out shared/ beside the repository")
    return schemas
