"""The deploy test's fixtures: the four images built with podman (`make images
DOCKER=podman`, after `make base-image` and `make wheelhouse`), the chart rendered with
them, and its pods run under `podman kube play` (kube_stack.py says what podman does
not do as a kubelet would, and how this makes up for it). `make test-deploy` runs it;
`make test` leaves this folder out (the root conftest.py)."""

import base64
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# With --import-mode=importlib no test directory is on sys.path.
kube_stack = _load("kube_stack", HERE / "kube_stack.py")
render = _load("docflow_deploy_render", REPO / "deploy" / "render.py")

IMAGE_REGISTRY, IMAGE_TAG = "localhost/docflow", "deploy-test"
BASE_IMAGE = "localhost/docflow-base:bookworm"
REDIS_IMAGE = ("localhost/docflow-test-redis", "bookworm")
KEY, TENANT = "deploy-test-key", "deploy-test"
SERVICES = ("gateway", "extractor", "embedder", "indexer")
# What the build took and made, printed at the end of the run (docs/images.md).
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("docflow images under podman")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def podman_runs_containers() -> None:
    """Skips (saying why) where podman is missing or cannot start a container."""
    if shutil.which("podman") is None:
        reason = "podman is not installed (`make podman-setup` installs it, as root on Debian)"
    else:
        # The host's root, read-only under an overlay: needs no image yet.
        probe = subprocess.run(["podman", "run", "--rm", "--network", "none", "--rootfs", "/:O", "true"],
                               capture_output=True, text=True, timeout=300)
        reason = None if probe.returncode == 0 else \
            f"podman cannot run containers here: {probe.stderr.strip().splitlines()[-1:]}"
    if reason:
        print(f"\nSKIPPED deploy test: {reason}", file=sys.stderr)
        pytest.skip(reason)


def timed(name: str, command: list[str], log: Path) -> None:
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n==> {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=3000)
    FIGURES[f"{name} (s)"] = f"{time.monotonic() - started:.0f}"
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        pytest.fail(f"{' '.join(command)} failed ({result.returncode}); end of {log}:\n{tail}")


@pytest.fixture(scope="session")
def images(podman_runs_containers, tmp_path_factory) -> None:
    """Every image the deploy runs, built by the Makefile's own targets (cached layers,
    base image and wheelhouse make a second run fast); each step timed."""
    log = tmp_path_factory.mktemp("build") / "build.log"
    make = ["make", "--no-print-directory"]
    timed("podman setup", [*make, "podman-setup"], log)
    timed("base image", [*make, "base-image", f"BASE_IMAGE={BASE_IMAGE}"], log)
    timed("wheelhouse", [*make, "wheelhouse", f"BASE_IMAGE={BASE_IMAGE}"], log)
    timed("four images", [*make, "images", "DOCKER=podman", f"BASE_IMAGE={BASE_IMAGE}",
                          f"IMAGE_REGISTRY={IMAGE_REGISTRY}", f"IMAGE_TAG={IMAGE_TAG}"], log)
    timed("redis image", ["podman", "build", "--quiet", "--network", "host", "--format", "docker",
                          "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", ":".join(REDIS_IMAGE),
                          "-f", str(HERE / "redis.Containerfile"), str(HERE)], log)
    for service in SERVICES:
        size = kube_stack.podman("image", "inspect", "--format", "{{.Size}}",
                                 f"{IMAGE_REGISTRY}/docflow-{service}:{IMAGE_TAG}").stdout
        FIGURES[f"docflow-{service} image (MB)"] = f"{int(size) / 1e6:.0f}"


def chart_values() -> dict:
    """The chart as a single-node cluster would run it: the images just built, the
    shared volume for storage (no S3 here), the test's API key and Redis image."""
    return {
        "image": {"registry": IMAGE_REGISTRY, "tag": IMAGE_TAG, "pullPolicy": "IfNotPresent"},
        "storage": {"backend": "local"},
        "redis": {"image": {"repository": REDIS_IMAGE[0], "tag": REDIS_IMAGE[1]}},
        "gateway": {"apiKeys": {"value": f"{KEY}={TENANT}"}},
    }


def wait_until(what: str, check, timeout: float, on_timeout=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(1)
    raise AssertionError(f"{what} not within {timeout:.0f}s\n{on_timeout()}")


def answers(url: str) -> bool:
    return httpx.get(url, timeout=5).status_code == 200


@pytest.fixture(scope="session")
def stack(images, tmp_path_factory):
    """The chart's pods, Redis first, each docflow pod up once its probe port answers."""
    objects = render.manifests(chart_values())
    kube = kube_stack.KubeStack(objects, tmp_path_factory.mktemp("kube"))
    leftovers = kube.leftovers()
    assert not leftovers, f"a previous run left these behind: {leftovers}"
    redis = [name for name, w in kube.workloads.items() if w.kind == "StatefulSet"]
    started = time.monotonic()
    try:
        kube.up(order=[*redis, *(name for name in kube.workloads if name not in redis)])
        for name, workload in kube.workloads.items():
            for probe in workload.probes:
                if probe.kind == "startupProbe" and probe.http_path:
                    url = f"http://127.0.0.1:{workload.published[probe.port]}{probe.http_path}"
                    wait_until(f"{name}'s startup probe {url}", lambda u=url: answers(u), 300,
                               lambda w=workload: kube.logs(w))
        gateway = kube.workloads["docflow-gateway"]
        wait_until("the gateway's /readyz", lambda: answers(f"{gateway_url(kube)}/readyz"), 120,
                   lambda: kube.logs(gateway))
        FIGURES["pods up (s)"] = f"{time.monotonic() - started:.0f}"
        yield kube
    finally:
        kube.down()


def gateway_url(kube) -> str:
    gateway = kube.workloads["docflow-gateway"]
    return f"http://127.0.0.1:{gateway.published[8000]}"


@pytest.fixture(scope="session")
def api(stack) -> httpx.Client:
    return httpx.Client(base_url=gateway_url(stack), headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def secret_value(objects: list[dict], name: str, key: str) -> str:
    (secret,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name]
    return base64.b64decode(secret["data"][key]).decode()
