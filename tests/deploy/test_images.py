"""The Dockerfiles: multi-stage on a version-pinned slim base, non-root, each image
holding only docflow-shared and its own service (no Docker engine runs here, so the
images are checked from their Dockerfiles and from the installed distributions'
dependency metadata, which is exactly what each image's `pip install` resolves)."""

import json
import re
from importlib.metadata import distribution

import pytest
from deploy_support import REPO, SERVICES, WORKERS
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from docflow.shared.names import SERVICE_OF_STAGE, queues_of_stage

STAGE_OF_SERVICE = {service: stage for stage, service in SERVICE_OF_STAGE.items()}
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


def instructions(service: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of services/<service>/Dockerfile, continuations joined."""
    text = (REPO / "services" / service / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(entry.split(None, 1)[0].upper(), entry.split(None, 1)[1]) for entry in logical]


def args_of(service: str, instruction: str) -> list[str]:
    return [args for name, args in instructions(service) if name == instruction]


def dependency_closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `pip install <name>[extras]` pulls in, from installed metadata."""
    seen: dict[str, set[str]] = {}
    pending = [(name, set(extras))]
    while pending:
        current, wanted = pending.pop()
        key = canonicalize_name(current)
        if key in seen and wanted <= seen[key]:
            continue
        seen.setdefault(key, set()).update(wanted)
        for line in distribution(current).requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in wanted | {""}):
                pending.append((requirement.name, set(requirement.extras)))
    return set(seen)


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_build_on_a_pinned_slim_base(service):
    stages = args_of(service, "FROM")
    assert len(stages) >= 2, "build tools stay in the build stage"
    for stage in stages:
        image, _, alias = stage.partition(" AS ")
        assert BASE_IMAGE.match(image.strip()), f"base image not pinned by version: {image}"
    assert stages[-1].endswith("AS runtime")


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_the_charts_non_root_user(service, default_values):
    users = args_of(service, "USER")
    assert users[-1] == f"{default_values['runAsUser']}:{default_values['runAsUser']}"
    assert any("useradd" in run and f"--uid {default_values['runAsUser']}" in run
               for run in args_of(service, "RUN"))


@pytest.mark.parametrize("service", SERVICES)
def test_copies_only_shared_and_its_own_service(service):
    for copy in args_of(service, "COPY"):
        if copy.startswith("--from="):
            continue
        *sources, _ = copy.split()
        for source in sources:
            assert source.startswith(("shared/", f"services/{service}/")), f"COPY {source}"
    installs = [run for run in args_of(service, "RUN") if "pip install" in run and "torch==" not in run]
    for run in installs:
        targets = re.findall(r"\./(?:shared|services/[a-z]+)\S*", run)
        installed = {t.strip('"').split("[")[0] for t in targets}
        assert installed == {"./shared", f"./services/{service}"}


@pytest.mark.parametrize("service", SERVICES)
def test_has_a_healthcheck_and_tini_as_pid_1(service):
    assert args_of(service, "HEALTHCHECK")
    assert json.loads(args_of(service, "ENTRYPOINT")[-1]) == ["tini", "--"]


@pytest.mark.parametrize("service", WORKERS)
def test_worker_command_consumes_its_own_queue(service):
    command = json.loads(args_of(service, "CMD")[-1])
    assert command[:4] == ["celery", "-A", f"docflow.{service}.worker", "worker"]
    queues = queues_of_stage(STAGE_OF_SERVICE[service])
    assert command[command.index("-Q") + 1] == ",".join(queue.value for queue in queues)
    assert "EXPOSE" in dict(instructions(service)) and args_of(service, "EXPOSE") == ["9100"]


def test_gateway_command_and_port():
    assert json.loads(args_of("gateway", "CMD")[-1]) == ["python", "-m", "docflow.gateway"]
    env = " ".join(args_of("gateway", "ENV"))
    assert "DOCFLOW_GATEWAY_HOST=0.0.0.0" in env and "DOCFLOW_GATEWAY_PORT=8000" in env


def test_embedder_installs_the_cpu_torch_build_before_the_model_extra():
    runs = args_of("embedder", "RUN")
    torch_pin = next(r for r in distribution("docflow-embedder").requires if r.startswith("torch=="))
    (torch_index,) = [i for i, run in enumerate(runs) if "download.pytorch.org/whl/cpu" in run]
    assert torch_pin.split(";")[0].strip() in runs[torch_index], "the same torch version as the minilm extra"
    (extra_index,) = [i for i, run in enumerate(runs) if "[minilm]" in run]
    assert torch_index < extra_index
    env = " ".join(args_of("embedder", "ENV"))
    assert "HF_HUB_OFFLINE=1" in env, "the packaged model must never reach for the network"


def test_extractor_ships_tesseract_with_english_and_german_only():
    apt = " ".join(run for run in args_of("extractor", "RUN") if "apt-get install" in run)
    assert "--no-install-recommends" in apt
    languages = set(re.findall(r"tesseract-ocr-(\w+)", apt))
    assert languages == {"eng", "deu"}
    assert "OMP_THREAD_LIMIT=1" in " ".join(args_of("extractor", "ENV"))
    for other in ("gateway", "embedder", "indexer"):
        assert "tesseract" not in " ".join(args_of(other, "RUN"))


@pytest.mark.parametrize("service, extras, forbidden", [
    ("gateway", (), {"torch", "pypdf", "sentence-transformers", "transformers", "lancedb", "pinecone",
                     "pytesseract", "pyarrow"}),
    ("extractor", (), {"torch", "sentence-transformers", "lancedb", "pinecone"}),
    ("embedder", ("minilm",), {"pypdf", "pytesseract", "lancedb", "pinecone", "fastapi"}),
    ("indexer", (), {"torch", "pypdf", "pytesseract", "sentence-transformers", "fastapi"}),
])
def test_each_image_installs_only_its_own_stages_libraries(service, extras, forbidden):
    closure = dependency_closure(f"docflow-{service}", frozenset(extras))
    assert "docflow-shared" in closure
    assert not closure & {canonicalize_name(f) for f in forbidden}, closure & forbidden
    others = {f"docflow-{s}" for s in SERVICES} - {f"docflow-{service}"}
    assert not closure & others


def test_dockerignore_sends_only_what_the_images_copy():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "an allowlist: ignore everything, then admit what the images copy"
    for service in SERVICES:
        own = (REPO / "services" / service / "Dockerfile.dockerignore").read_text()
        allowed = re.findall(r"^!(\S+)", own, flags=re.MULTILINE)
        assert {a.split("/")[0] + "/" + a.split("/")[1] if a.startswith("services/") else a.split("/")[0]
                for a in allowed} == {"shared", f"services/{service}"}

