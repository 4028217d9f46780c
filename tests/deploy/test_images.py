"""The images: one Dockerfile (services/Dockerfile) built per service with that
service's build args from skaffold.yaml (and the same from `make images`): multi-stage
on a version-pinned slim base, non-root, each image holding only docflow-shared and its
own service, run by tini with the service's own command (services/docflow-service.sh).
No Docker engine runs here, so the images are checked from the Dockerfile as each
service's build args expand it, from the script run with stand-ins for the programs it
starts, and from the installed distributions' dependency metadata, which is exactly
what each image's `pip install` resolves."""

import json
import re
import shlex
import subprocess
from fnmatch import fnmatch
from importlib.metadata import distribution
from importlib.util import find_spec

import pytest
import yaml
from deploy_support import REPO, SERVICES, WORKERS
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from docflow.devstack.stack import INDEX_THREADS
from docflow.shared.names import SERVICE_OF_STAGE, WorkerRole, pool_of_role, queues_of_stage

STAGE_OF_SERVICE = {service: stage for stage, service in SERVICE_OF_STAGE.items()}
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
DOCKERFILE = "services/Dockerfile"
# The one file every image copies besides shared/ and its own service's.
SERVICE_SCRIPT = "services/docflow-service.sh"


def skaffold_build_args() -> dict[str, dict[str, str]]:
    """Service -> the build args skaffold.yaml builds its image with."""
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    return {artifact["image"].removeprefix("docflow-"):
            {key: str(value) for key, value in artifact["docker"].get("buildArgs", {}).items()}
            for artifact in config["build"]["artifacts"]}


BUILD_ARGS = skaffold_build_args()


def logical_lines(text: str) -> list[str]:
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return logical


def instructions(service: str, **overrides: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of services/Dockerfile as built for <service>:
    continuations joined, each stage's ARGs replaced by the service's build args (from
    skaffold.yaml, then <overrides>) or their defaults, as Docker (and the shell of a RUN)
    would. An ARG before the first FROM is global: FROM lines see it, stages do not."""
    given = {**BUILD_ARGS[service], **overrides}
    result, scope, global_scope = [], {}, None
    for entry in logical_lines((REPO / DOCKERFILE).read_text()):
        name, rest = entry.split(None, 1)
        name = name.upper()
        if name == "FROM":
            if global_scope is None:
                global_scope = scope
            scope = dict(global_scope)  # for the FROM line itself
        if name == "ARG":
            key, _, default = rest.partition("=")
            scope[key] = given.get(key, default.strip('"'))
        else:
            rest = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: scope.get(m[1] or m[2], m[0]), rest)
        result.append((name, rest))
        if name == "FROM":
            scope = {}  # an ARG is in scope for the rest of its stage only
    return result


def args_of(service: str, instruction: str, **overrides: str) -> list[str]:
    return [args for name, args in instructions(service, **overrides) if name == instruction]


def build_arg(service: str, name: str) -> str:
    """The value a build arg takes in the service's build (its default when not given)."""
    declared = [args for args in args_of(service, "ARG") if args.partition("=")[0] == name]
    assert declared, f"the Dockerfile declares no ARG {name}"
    return BUILD_ARGS[service].get(name, declared[0].partition("=")[2].strip('"'))


def run_service_script(service: str, tmp_path, command: str = "run") -> tuple[list[str], str]:
    """What docflow-service.sh starts in the service's image: the argv it execs and the
    OMP_THREAD_LIMIT that program gets ("unset" if none); celery and python are stand-ins
    that print both."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for program in ("celery", "python"):
        stub = stubs / program
        stub.write_text('#!/bin/sh\nprintf "%s\\n" "${OMP_THREAD_LIMIT-unset}" "$(basename "$0")" "$@"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", **dict(e.split("=", 1) for e in image_env(service))}
    result = subprocess.run(["sh", str(REPO / SERVICE_SCRIPT), command], env=env,
                            capture_output=True, text=True, timeout=10, check=True)
    omp_thread_limit, *argv = result.stdout.splitlines()
    return argv, omp_thread_limit


def image_env(service: str) -> list[str]:
    """The runtime stage's ENV entries (NAME=value) but PATH."""
    runtime = instructions(service)[max(i for i, (name, _) in enumerate(instructions(service)) if name == "FROM"):]
    entries = [e for name, args in runtime if name == "ENV" for e in shlex.split(args)]
    return [e for e in entries if not e.startswith("PATH=")]


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


def extras_of(service: str) -> frozenset[str]:
    extras = build_arg(service, "EXTRAS")
    return frozenset(filter(None, extras.strip("[]").split(",")))


def test_one_build_per_service_with_build_args_the_dockerfile_declares():
    assert set(BUILD_ARGS) == set(SERVICES)
    declared = {args.partition("=")[0] for args in args_of("gateway", "ARG")}
    assert {"BASE_IMAGE", "WHEELHOUSE"} <= declared
    for service, build_args in BUILD_ARGS.items():
        assert build_args["SERVICE"] == service
        # Docker ignores a build arg the Dockerfile does not declare: a typo would be silent.
        assert set(build_args) <= declared, set(build_args) - declared


def test_make_images_passes_skaffolds_build_args():
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    for service in SERVICES:
        (line,) = re.findall(rf"^IMAGE_BUILD_ARGS\.{service} :=(.*)$", makefile, flags=re.MULTILINE)
        words = shlex.split(line)
        assert words[::2] == ["--build-arg"] * (len(words) // 2)
        assert dict(word.split("=", 1) for word in words[1::2]) == BUILD_ARGS[service]
    images = makefile[makefile.index("\nimages:"):]
    assert "-f services/Dockerfile $(IMAGE_BUILD_ARGS.$(svc))" in images


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_build_on_a_pinned_slim_base(service):
    stages = args_of(service, "FROM")
    assert len(stages) >= 2, "build tools stay in the build stage"
    for stage in stages:
        image, _, alias = stage.partition(" AS ")
        assert BASE_IMAGE.match(image.strip()), f"base image not pinned by version: {image}"
    assert stages[-1].endswith("AS runtime")


@pytest.mark.parametrize("service", SERVICES)
def test_both_stages_build_from_the_base_image_build_arg(service):
    """BASE_IMAGE (the offline base of `make base-image` on machines without a registry)
    replaces the base of both stages; by default both are the pinned slim image."""
    stages = args_of(service, "FROM", BASE_IMAGE="localhost/docflow-base:bookworm")
    bases = [stage.partition(" AS ")[0] for stage in stages]
    assert bases == ["localhost/docflow-base:bookworm"] * len(stages)


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
        *sources, target = [word for word in copy.split() if not word.startswith("--")]
        for source in sources:
            assert source.startswith(("shared/", f"services/{service}/")) or source == SERVICE_SCRIPT, \
                f"COPY {source}"
    installs = [run for run in args_of(service, "RUN") if "pip install" in run and "torch==" not in run]
    assert installs
    for run in installs:
        targets = re.findall(r"\./(?:shared|services/[a-z]+)\S*", run)
        installed = {t.strip('"').split("[")[0] for t in targets}
        assert installed == {"./shared", f"./services/{service}"}


@pytest.mark.parametrize("service", SERVICES)
def test_has_a_healthcheck_and_tini_as_pid_1(service):
    assert args_of(service, "HEALTHCHECK")
    assert json.loads(args_of(service, "ENTRYPOINT")[-1]) == ["tini", "--"]
    apt = " ".join(run for run in args_of(service, "RUN") if "apt-get install" in run)
    assert "tini" in apt.split()


@pytest.mark.parametrize("service", SERVICES)
def test_runs_its_own_service_by_default(service):
    """CMD is the script, which picks the service's command by DOCFLOW_SERVICE: the
    image's SERVICE, and the script is where the CMD says."""
    assert json.loads(args_of(service, "CMD")[-1]) == ["docflow-service", "run"]
    assert f"DOCFLOW_SERVICE={service}" in image_env(service)
    (copy,) = [c for c in args_of(service, "COPY") if SERVICE_SCRIPT in c]
    assert copy.split()[-1] == "/usr/local/bin/docflow-service" and "--chmod=0755" in copy


@pytest.mark.parametrize("service", WORKERS)
def test_worker_command_consumes_its_own_queue(service, tmp_path):
    command, _ = run_service_script(service, tmp_path)
    assert command[:4] == ["celery", "-A", f"docflow.{service}.worker", "worker"]
    queues = queues_of_stage(STAGE_OF_SERVICE[service])
    assert command[command.index("-Q") + 1] == ",".join(queue.value for queue in queues)
    assert command[command.index("-n") + 1] == f"{service}@%h"
    assert command[command.index("--pool") + 1] == pool_of_role(STAGE_OF_SERVICE[service], WorkerRole.DOCUMENT)
    assert "EXPOSE" in dict(instructions(service)) and args_of(service, "EXPOSE") == ["9100"]
    assert "DOCFLOW_METRICS_PORT=9100" in image_env(service)


def test_gateway_command_and_port(tmp_path):
    command, _ = run_service_script("gateway", tmp_path)
    assert command == ["python", "-m", "docflow.gateway"]
    env = image_env("gateway")
    assert "DOCFLOW_GATEWAY_HOST=0.0.0.0" in env and "DOCFLOW_GATEWAY_PORT=8000" in env
    assert args_of("gateway", "EXPOSE") == ["8000"]


@pytest.mark.parametrize("service, url", [
    ("gateway", "http://127.0.0.1:8000/healthz"),
    *((worker, "http://127.0.0.1:9100/metrics") for worker in WORKERS),
])
def test_healthcheck_asks_the_services_own_endpoint(service, url, tmp_path):
    assert json.loads(args_of(service, "HEALTHCHECK")[-1].split(" CMD ", 1)[1]) == ["docflow-service", "healthcheck"]
    command, _ = run_service_script(service, tmp_path, "healthcheck")
    assert command[0] == "python" and command[-1] == url


def test_embedder_installs_the_cpu_torch_build_before_the_model_extra():
    runs = args_of("embedder", "RUN")
    torch_pin = next(r for r in distribution("docflow-embedder").requires if r.startswith("torch=="))
    (torch_index,) = [i for i, run in enumerate(runs) if "download.pytorch.org/whl/cpu" in run]
    assert torch_pin.split(";")[0].strip() in runs[torch_index], "the same torch version as the minilm extra"
    assert "minilm" in extras_of("embedder")
    (extra_index,) = [i for i, run in enumerate(runs) if build_arg("embedder", "EXTRAS") in run]
    assert torch_index < extra_index
    assert "HF_HUB_OFFLINE=1" in image_env("embedder"), "the packaged model must never reach for the network"
    for other in ("gateway", "extractor", "indexer"):
        assert build_arg(other, "TORCH_VERSION") == "", f"no torch in the {other} image"


def test_embedder_builds_the_onnx_model_files_at_build_time():
    """After its own distribution is installed, in the build stage, whose virtualenv
    (sys.prefix, where onnx_build writes) the runtime stage copies."""
    assert {"minilm", "onnx", "onnx-build"} <= extras_of("embedder")
    module = build_arg("embedder", "PREPARE_MODULE")
    assert module == "docflow.embedder.onnx_build" and find_spec(module) is not None
    steps = instructions("embedder")
    runtime = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    (prepare,) = [i for i, (name, args) in enumerate(steps) if name == "RUN" and f"python -m {module}" in args.replace('"', "")]
    last_install = max(i for i, (name, args) in enumerate(steps) if name == "RUN" and "pip install" in args)
    assert last_install < prepare < runtime
    assert "COPY --from=build /opt/docflow /opt/docflow" in [f"COPY {args}" for name, args in steps[runtime:]
                                                              if name == "COPY"]
    for other in ("gateway", "extractor", "indexer"):
        assert build_arg(other, "PREPARE_MODULE") == ""


def test_extractor_ships_tesseract_with_english_and_german_only(tmp_path):
    apt = " ".join(run for run in args_of("extractor", "RUN") if "apt-get install" in run)
    assert "--no-install-recommends" in apt
    languages = set(re.findall(r"tesseract-ocr-(\w+)", apt))
    assert languages == {"eng", "deu"}
    _, omp_thread_limit = run_service_script("extractor", tmp_path)
    assert omp_thread_limit == "1"
    for other in ("gateway", "embedder", "indexer"):
        assert "tesseract" not in " ".join(args_of(other, "RUN"))
        # It would cap torch's OpenMP threads in the embedder.
        assert not any(e.startswith("OMP_THREAD_LIMIT=") for e in image_env(other))
        assert run_service_script(other, tmp_path)[1] == "unset"


@pytest.mark.parametrize("service, forbidden", [
    ("gateway", {"torch", "pypdf", "sentence-transformers", "transformers", "lancedb", "pinecone",
                 "pytesseract", "pyarrow"}),
    ("extractor", {"torch", "sentence-transformers", "lancedb", "pinecone"}),
    ("embedder", {"pypdf", "pytesseract", "lancedb", "pinecone", "fastapi"}),
    ("indexer", {"torch", "pypdf", "pytesseract", "sentence-transformers", "fastapi"}),
])
def test_each_image_installs_only_its_own_stages_libraries(service, forbidden):
    closure = dependency_closure(f"docflow-{service}", extras_of(service))
    assert "docflow-shared" in closure
    assert not closure & {canonicalize_name(f) for f in forbidden}, closure & forbidden
    others = {f"docflow-{s}" for s in SERVICES} - {f"docflow-{service}"}
    assert not closure & others


def test_dockerignore_sends_only_what_the_images_copy():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "an allowlist: ignore everything, then admit what the images copy"
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    copied = {source.rstrip("/") for service in SERVICES for copy in args_of(service, "COPY")
              if not copy.startswith("--from=")
              for source in [w for w in copy.split() if not w.startswith("--")][:-1]}
    for source in copied:
        assert any(fnmatch(source, pattern) for pattern in allowed), f"COPY {source} is not sent"
    for pattern in allowed:
        assert any(fnmatch(source, pattern) for source in copied), f"{pattern} is sent but never copied"
        assert pattern.startswith(("shared/", "services/")), pattern


def run_build_stage_installs(service: str, tmp_path, **overrides: str) -> list[list[str]]:
    """Every pip call the build stage's RUNs make, as a stand-in pip records it: the
    environment variables that decide where pip looks, then its arguments."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    log = tmp_path / "pip.log"
    (stubs / "pip").write_text(
        '#!/bin/sh\n'
        'printf "%s|" "NO_INDEX=${PIP_NO_INDEX-}" "FIND_LINKS=${PIP_FIND_LINKS-}" "$@" >>"$PIP_LOG"\n'
        'echo >>"$PIP_LOG"\n')
    (stubs / "pip").chmod(0o755)
    steps = instructions(service, **overrides)
    runtime = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    for name, run in steps[:runtime]:
        if name == "RUN" and "pip install" in run:
            subprocess.run(["sh", "-ec", run], cwd=tmp_path, check=True, timeout=10,
                           env={"PATH": f"{stubs}:/usr/bin:/bin", "PIP_LOG": str(log)})
    return [line.rstrip("|").split("|") for line in log.read_text().splitlines()]


@pytest.mark.parametrize("service", SERVICES)
def test_with_a_wheelhouse_every_install_reads_it_alone(service, tmp_path):
    """WHEELHOUSE set (`make images DOCKER=podman`): every pip install, torch's and the
    build backend's (build isolation reads the same variables) included, finds wheels in
    that folder only; unset, pip uses the index as before, torch from PyTorch's CPU index."""
    (tmp_path / "offline").mkdir()
    offline = run_build_stage_installs(service, tmp_path / "offline", WHEELHOUSE="/wheelhouse")
    assert offline and all(call[:2] == ["NO_INDEX=1", "FIND_LINKS=/wheelhouse"] for call in offline), offline
    assert not any("--index-url" in call for call in offline)
    (tmp_path / "online").mkdir()
    online = run_build_stage_installs(service, tmp_path / "online")
    assert len(online) == len(offline)
    assert all(call[:2] == ["NO_INDEX=", "FIND_LINKS="] for call in online), online
    torch = [call for call in online if any(arg.startswith("torch==") for arg in call)]
    if build_arg(service, "TORCH_VERSION"):
        assert torch[0][-2:] == ["--index-url", "https://download.pytorch.org/whl/cpu"]
    else:
        assert not torch


def test_make_images_with_podman_builds_offline_from_the_base_and_the_wheelhouse():
    """DOCKER=podman: the base image of `make base-image` and the wheelhouse of `make
    wheelhouse`, mounted where WHEELHOUSE says; the default engine gets neither."""
    def dry_run(*assignments: str) -> str:
        return subprocess.run(["make", "-n", "images", *assignments], cwd=REPO, check=True,
                              capture_output=True, text=True, timeout=30).stdout

    podman = dry_run("DOCKER=podman", "DOCFLOW_WHEELHOUSE=/w", "BASE_IMAGE=localhost/base:1")
    builds = [line for line in podman.splitlines() if "build -f services/Dockerfile" in line]
    (build,) = builds  # the recipe is one shell line over every service
    for expected in ("--build-arg BASE_IMAGE=localhost/base:1", "--build-arg WHEELHOUSE=/wheelhouse",
                     "-v /w:/wheelhouse:ro", "--network host", "--format docker"):
        assert build.count(expected) == len(SERVICES), expected
    assert "scripts/base_image.sh localhost/base:1" in podman and "scripts/wheelhouse.sh /w" in podman
    default = dry_run("DOCKER=docker")
    assert "BASE_IMAGE" not in default and "WHEELHOUSE" not in default and "base_image.sh" not in default


def test_the_indexer_image_runs_as_many_threads_as_make_run_and_the_chart(tmp_path, default_values):
    """The indexer's documents share commits up to its thread count: the image's own
    command, `make run` (devstack) and the chart's default say the same number."""
    from docflow.devstack.stack import INDEX_THREADS

    command, _ = run_service_script("indexer", tmp_path)
    assert command[command.index("--concurrency") + 1] == str(INDEX_THREADS)
    assert default_values["indexer"]["concurrency"] == INDEX_THREADS
