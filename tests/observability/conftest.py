"""Dashboards and alerts as code: checked offline (promtool, the services' registries);
tests/e2e/test_prometheus.py checks them again against a real Prometheus."""

import importlib.util
import shutil
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
_load("observability_support", Path(__file__).with_name("observability_support.py"))


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run scripts/bootstrap.sh (Debian package prometheus)")
    return path
