"""checkov finds nothing wrong with the rendered manifests (every scenario) or the
Dockerfiles, except the checks .checkov.yaml skips, each with its reason.

checkov pins many libraries of its own, so it runs from its own virtualenv
(.venv-tools, installed by scripts/bootstrap.sh), never from .venv."""

import json
import re
import subprocess

import pytest
import yaml
from deploy_support import REPO, SCENARIOS

CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"
CONFIG = REPO / ".checkov.yaml"


def with_base_image_defaults(dockerfile: str) -> str:
    """The Dockerfile as a default build renders its FROM lines: the global ARGs (those
    before the first FROM, e.g. BASE_IMAGE) filled in with their defaults. checkov does
    not expand build args, and judges `FROM ${BASE_IMAGE}` an image without a tag."""
    head = dockerfile.split("\nFROM ", 1)[0]
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", head, flags=re.MULTILINE))
    return re.sub(r"^(FROM )\$\{(\w+)\}", lambda m: m.group(1) + defaults.get(m.group(2), m.group(0)),
                  dockerfile, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def checkov_reports(chart, tmp_path_factory) -> list[dict]:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV.relative_to(REPO)}: run scripts/bootstrap.sh "
                    "(or `make install`), which installs it into its own virtualenv")
    root = tmp_path_factory.mktemp("checkov")
    for scenario, values in SCENARIOS.items():
        for path, text in chart.render(values).items():
            if path.endswith(".yaml") and text.strip():
                target = root / "manifests" / scenario / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
    # One Dockerfile builds every image (each with its own build args).
    target = root / "dockerfiles" / "Dockerfile"
    target.parent.mkdir(parents=True)
    target.write_text(with_base_image_defaults((REPO / "services" / "Dockerfile").read_text()))
    result = subprocess.run(
        [str(CHECKOV), "--config-file", str(CONFIG), "--directory", str(root),
         "--framework", "kubernetes", "dockerfile", "--output", "json", "--skip-download"],
        capture_output=True, text=True, timeout=300, cwd=root,
    )
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov produced no report (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return reports if isinstance(reports, list) else [reports]


def test_checkov_scanned_manifests_and_dockerfiles(checkov_reports):
    by_type = {report["check_type"]: report["summary"] for report in checkov_reports}
    assert set(by_type) == {"kubernetes", "dockerfile"}
    for check_type, summary in by_type.items():
        assert summary["parsing_errors"] == 0, check_type
        assert summary["resource_count"] > 0 and summary["passed"] > 0, check_type


def test_checkov_reports_no_failed_checks(checkov_reports):
    failures = [
        f"{failed['check_id']} {failed['check_name']}: {failed['resource']} in {failed['file_path']}"
        for report in checkov_reports for failed in report["results"]["failed_checks"]
    ]
    assert not failures, "\n".join(failures)


def test_the_scanned_dockerfile_names_the_pinned_base_image():
    rendered = with_base_image_defaults((REPO / "services" / "Dockerfile").read_text())
    froms = re.findall(r"^FROM (\S+)", rendered, flags=re.MULTILINE)
    assert froms and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image) for image in froms), froms


def test_every_skipped_check_has_a_written_reason():
    config = yaml.safe_load(CONFIG.read_text())
    skipped = config.get("skip-check", [])
    lines = CONFIG.read_text().splitlines()
    for check in skipped:
        (line,) = [line for line in lines if re.match(rf"\s*-\s*{re.escape(check)}\b", line)]
        reason = line.partition("#")[2].strip()
        assert len(reason) > 40, f"{check} is skipped without a reason"
