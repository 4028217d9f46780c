"""The PrometheusRule the chart renders is valid for Prometheus itself (promtool)."""

import shutil
import subprocess

import pytest
import yaml
from deploy_support import named


def test_rendered_rules_pass_promtool(default_manifests, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run scripts/bootstrap.sh (Debian package prometheus)")
    rule = named(default_manifests, "PrometheusRule", "docflow")
    assert rule["spec"]["groups"], "no rule groups loaded from files/rules/"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
