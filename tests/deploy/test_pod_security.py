"""Every pod the chart renders runs under the Pod Security Standards "restricted"
profile with a read-only root filesystem, is bounded and probed, may be disrupted
only within a PodDisruptionBudget, and is covered by a NetworkPolicy."""

import pytest
from deploy_support import (SCENARIOS, SERVICES, containers, named, of_kind, pod_labels, pod_spec, selects,
                            workloads)

FORBIDDEN_VOLUME_TYPES = {"hostPath", "gcePersistentDisk", "awsElasticBlockStore", "nfs", "iscsi",
                          "glusterfs", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc",
                          "azureFile", "vsphereVolume", "quobyte", "azureDisk", "portworxVolume",
                          "photonPersistentDisk", "scaleIO", "storageos"}


def all_workloads(scenario_manifests):
    for scenario in SCENARIOS:
        for workload in workloads(scenario_manifests[scenario]):
            yield scenario, workload


def test_restricted_pod_security_standard(scenario_manifests):
    problems = []
    for scenario, workload in all_workloads(scenario_manifests):
        spec, name = pod_spec(workload), f"{scenario}: {workload['metadata']['name']}"
        pod = spec.get("securityContext", {})
        if not pod.get("runAsNonRoot") or pod.get("runAsUser", 1) == 0:
            problems.append(f"{name}: pod may run as root")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod seccomp is not RuntimeDefault")
        if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
            problems.append(f"{name}: host namespaces")
        for volume in spec.get("volumes", []):
            if FORBIDDEN_VOLUME_TYPES & set(volume):
                problems.append(f"{name}: volume {volume['name']} has a restricted type")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a ServiceAccount token it does not need")
        for container in containers(workload):
            context = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if context.get("capabilities", {}).get("drop") != ["ALL"] or context["capabilities"].get("add"):
                problems.append(f"{where}: capabilities are not exactly drop [ALL]")
            if context.get("privileged"):
                problems.append(f"{where}: privileged")
            if context.get("runAsNonRoot") is False or context.get("runAsUser") == 0:
                problems.append(f"{where}: runs as root")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if any(port.get("hostPort") for port in container.get("ports", [])):
                problems.append(f"{where}: hostPort")
    assert not problems, "\n".join(problems)


def test_writable_paths_are_emptydir_or_persistent_volumes(scenario_manifests):
    for _, workload in all_workloads(scenario_manifests):
        spec = pod_spec(workload)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        for container in containers(workload):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{workload['metadata']['name']}: no writable /tmp"
            assert "emptyDir" in volumes[mounts["/tmp"]]
            assert volumes[mounts["/tmp"]]["emptyDir"].get("sizeLimit"), "an unbounded /tmp can fill the node"
            for name in mounts.values():
                assert name in volumes or name in claims


def test_every_container_is_bounded_and_probed(scenario_manifests):
    for _, workload in all_workloads(scenario_manifests):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: no {kind}"
            assert container.get("livenessProbe") and container.get("readinessProbe"), f"{where}: unprobed"
            assert container.get("startupProbe"), f"{where}: a slow start would trip liveness"


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "gateway"])
def test_worker_probes_use_the_metrics_port(default_manifests, service):
    (container,) = containers(named(default_manifests, "Deployment", f"docflow-{service}"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_gateway_probes_health_and_readiness(default_manifests):
    (container,) = containers(named(default_manifests, "Deployment", "docflow-gateway"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_every_service_has_a_disruption_budget_that_never_blocks_a_drain(default_manifests):
    budgets = of_kind(default_manifests, "PodDisruptionBudget")
    for service in SERVICES:
        deployment = named(default_manifests, "Deployment", f"docflow-{service}")
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployment))]
        # maxUnavailable, not minAvailable: a worker scaled to one replica must not pin its node.
        assert budget["spec"].get("maxUnavailable") == 1 and "minAvailable" not in budget["spec"]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_network_policies_cover_every_pod_and_deny_by_default(scenario_manifests, scenario):
    objects = scenario_manifests[scenario]
    policies = of_kind(objects, "NetworkPolicy")
    deny = named(objects, "NetworkPolicy", "docflow-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for workload in workloads(objects):
        own = [p for p in policies
               if p is not deny and selects(p["spec"]["podSelector"], pod_labels(workload))]
        assert len(own) == 1, f"{workload['metadata']['name']}: {len(own)} own policies"
        assert selects(deny["spec"]["podSelector"], pod_labels(workload))
        assert own[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_only_docflow_and_keda_reach_redis(default_manifests):
    policy = named(default_manifests, "NetworkPolicy", "docflow-redis")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    peers = rule["from"]
    assert peers[0] == {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "docflow", "app.kubernetes.io/instance": "docflow"}}}
    assert peers[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}
    assert policy["spec"]["egress"] == []


def test_workers_accept_only_metrics_scrapes(default_manifests):
    for service in ("extractor", "embedder", "indexer"):
        policy = named(default_manifests, "NetworkPolicy", f"docflow-{service}")
        assert policy["spec"]["ingress"] == [{"ports": [{"port": 9100, "protocol": "TCP"}]}]
