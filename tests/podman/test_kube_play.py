"""docflow's chart run for real: the four images built with podman, the chart rendered
with them and played with `podman kube play` (conftest.py, kube_stack.py). Redis, the
gateway and every worker Deployment the chart renders run as their pods would on a
cluster: uid 10001, read-only root filesystem with the chart's emptyDirs, the chart's env
and Secrets, Service names resolved between pods. Only 127.0.0.1 is talked to, through
published ports."""

import socket
import subprocess
import threading
import time

import httpx
import kube_stack  # registered by conftest.py (no test folder is on sys.path)
import pytest

from docflow.devstack import samples

pytestmark = pytest.mark.timeout(3600)  # a cold build of the four images comes first
FINAL = {"completed", "failed", "cancelled"}
RUN_AS = "10001"


def docflow_workloads(stack):
    return [w for w in stack.workloads.values() if w.kind == "Deployment"]


def exec_in(stack, workload, *command: str) -> subprocess.CompletedProcess:
    container = workload.pod_spec["containers"][0]["name"]
    return kube_stack.podman("exec", workload.container_name(container), *command, check=False, timeout=60)


def upload(api, filename: str, data: bytes) -> str:
    response = api.post("/v1/documents", files={"file": (filename, data)}, params={"on_duplicate": "new"})
    assert response.status_code == 202, response.text
    return response.json()["document_id"]


def status_of(api, document_id: str) -> dict:
    response = api.get(f"/v1/documents/{document_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_final(api, document_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = status_of(api, document_id)
        if record["status"] in FINAL:
            return record
        time.sleep(0.5)
    raise AssertionError(f"{document_id} not final after {timeout}s: {record}")


def found_by_search(api, query: str) -> set[str]:
    response = api.post("/v1/search", json={"query": query, "top_k": 10})
    assert response.status_code == 200, response.text
    return {hit["document_id"] for hit in response.json()["results"]}


def test_every_pod_runs_as_the_chart_says(stack):
    """Non-root uid, nothing writable but the chart's volumes, the Secrets' values in
    the environment (the Redis URL with its password, as the kubelet expands it)."""
    password = kube_stack.secret_values(stack.objects)["docflow-redis"]["redis-password"]
    for workload in stack.workloads.values():
        assert exec_in(stack, workload, "id", "-u").stdout.strip() == RUN_AS, workload.name
        assert exec_in(stack, workload, "sh", "-c", "touch /probe-root").returncode != 0, \
            f"{workload.name}: the root filesystem is writable"
        assert exec_in(stack, workload, "sh", "-c", "touch /tmp/probe && rm /tmp/probe").returncode == 0, \
            f"{workload.name}: its /tmp emptyDir is not writable"
    for workload in docflow_workloads(stack):
        url = exec_in(stack, workload, "printenv", "DOCFLOW_REDIS_URL").stdout.strip()
        assert url == f"redis://:{password}@docflow-redis.docflow.svc.cluster.local:6379/0", workload.name


def test_service_names_resolve_between_pods(stack):
    """Every docflow pod resolves the Redis Service's in-cluster name to the Redis pod
    (a network alias on the test's podman network), and Redis answers there."""
    resolve = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"
    name = "docflow-redis.docflow.svc.cluster.local"
    addresses = {exec_in(stack, workload, "python", "-c", resolve, name).stdout.strip()
                 for workload in docflow_workloads(stack)}
    assert len(addresses) == 1 and all(addresses), addresses
    redis_pod = stack.workloads["docflow-redis"]
    own_address = "import socket; print(socket.gethostbyname(socket.gethostname()))"
    inside = exec_in(stack, redis_pod, "python", "-c", own_address)
    assert inside.returncode == 0 and inside.stdout.strip() in addresses
    ping = "import os, redis; print(redis.Redis.from_url(os.environ['DOCFLOW_REDIS_URL']).ping())"
    for workload in docflow_workloads(stack):
        assert exec_in(stack, workload, "python", "-c", ping).stdout.strip() == "True", workload.name


def test_every_probe_answers_on_its_port(stack):
    """Each probe of the chart, asked as the kubelet would: HTTP through the container
    port it names (named ports resolved), TCP on its port, exec inside the container."""
    checked = 0
    for workload in stack.workloads.values():
        for probe in workload.probes:
            if probe.http_path:
                url = f"http://127.0.0.1:{workload.published[probe.port]}{probe.http_path}"
                assert httpx.get(url, timeout=5).status_code == 200, (workload.name, probe)
            elif probe.command:
                assert exec_in(stack, workload, *probe.command).returncode == 0, (workload.name, probe)
            else:
                socket.create_connection(("127.0.0.1", workload.published[probe.port]), timeout=5).close()
            checked += 1
    assert checked >= 3 * len(stack.workloads)


def test_text_pdf_and_png_complete_and_are_found(api):
    documents = {
        "aurora.txt": (samples.text(["The aurora surveyor logs magnetometer readings at dawn."]),
                       "aurora magnetometer"),
        "harbour.pdf": (samples.pdf(["The harbour pilot charts tidal currents near the lighthouse."]),
                        "harbour pilot tidal currents"),
        "orchard.png": (samples.png("The orchard keeper grafts pear trees in spring"),
                        "orchard keeper grafts pear"),
    }
    ids = {name: upload(api, name, data) for name, (data, _) in documents.items()}
    for name, document_id in ids.items():
        record = wait_final(api, document_id)
        assert record["status"] == "completed", (name, record)
        assert record["chunks"] >= 1
    for name, (_, query) in documents.items():
        assert ids[name] in found_by_search(api, query), name


def test_every_docflow_pod_serves_metrics(stack, api):
    """The gateway's /metrics on its API port, each worker's on its metrics port (where
    Prometheus's PodMonitor scrapes); after the uploads above each counted its work."""
    expected = {"docflow-gateway": "docflow_gateway_requests_total",
                **{f"docflow-{stage}": "docflow_tasks_succeeded_total"
                   for stage in ("extractor", "embedder", "indexer")}}
    for workload in docflow_workloads(stack):
        port = workload.pod_spec["containers"][0]["ports"][0]["containerPort"]
        response = httpx.get(f"http://127.0.0.1:{workload.published[port]}/metrics", timeout=10)
        assert response.status_code == 200, workload.name
        assert "\ndocflow_" in response.text, workload.name
        if workload.name in expected:
            assert expected[workload.name] in response.text, workload.name


def test_a_worker_pod_stopped_mid_task_with_its_grace_period_finishes_the_task(stack, api):
    """A scale-down: the worker's container is stopped with the chart's
    terminationGracePeriodSeconds, as the kubelet does: SIGTERM (tini forwards it to
    Celery: warm shutdown), the running embed task completes, the worker exits 0 before
    the grace period ends, and the document completes. The container, not the pod: `podman
    pod stop` stops the pod's infra container at the same time, and with it the network
    the task still needs, where a kubelet keeps the sandbox until the containers exit."""
    embedder = stack.workloads["docflow-embedder"]
    sentence = "Paragraph {} sentence {} follows the canal past the granite quarry and the copper beacon."
    paragraphs = [" ".join(sentence.format(p, s) for s in range(12)) for p in range(160)]
    document_id = upload(api, "long-canal.txt", samples.text(paragraphs))
    deadline = time.monotonic() + 120
    while status_of(api, document_id)["status"] != "embedding":
        assert time.monotonic() < deadline and status_of(api, document_id)["status"] not in FINAL
        time.sleep(0.05)
    container = embedder.container_name(embedder.pod_spec["containers"][0]["name"])
    stopper = threading.Thread(target=kube_stack.podman,
                               args=("stop", "-t", str(embedder.grace_seconds), container),
                               kwargs={"timeout": embedder.grace_seconds + 60})
    stopper.start()
    time.sleep(1)
    assert status_of(api, document_id)["status"] == "embedding", "the stop must land mid-task"
    stopper.join()
    exit_code = kube_stack.podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
    assert exit_code == "0", f"the worker did not shut down warm: {stack.logs(embedder)}"
    record = wait_final(api, document_id)
    assert record["status"] == "completed", record
    assert document_id in found_by_search(api, "canal granite quarry copper beacon")


def test_teardown_leaves_no_pod_container_volume_or_network(stack):
    assert stack.down() == []
