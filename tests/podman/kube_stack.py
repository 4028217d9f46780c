"""The chart's objects run as pods under `podman kube play` (docs/images.md).

Podman 4.3 is no kubelet: what it does not do, this module does, and nothing else.
- Service names: one podman network with DNS (netavark + aardvark-dns); each pod joins
  it with the names of the Services that select it as network aliases (short and
  `<svc>.<namespace>.svc.<clusterDomain>`), so the URLs the chart writes resolve.
- StatefulSet: played as a Deployment of one pod, its volumeClaimTemplates as claims
  named as Kubernetes names them (`<template>-<statefulset>-0`).
- Claims and emptyDirs are podman named volumes. Podman names an emptyDir's volume after
  the pod's volume name ("tmp"), which every pod would share: each gets
  `<workload>-<volume>` instead, and all are created and removed here.
- Secrets: podman secrets holding the Secret's `data` as JSON (what kube play reads for
  `secretKeyRef`; it cannot read a Secret document it is given).
- `$(VAR)` in env values and args (the kubelet's dependent variables) is expanded here:
  podman passes it through literally.
- Probes: podman runs them with curl (not in the images) from systemd timers (none
  here), so they are taken out and kept for the test, which asks each one itself.
- Container ports are published on 127.0.0.1 (the only address a test talks to).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

NETWORK = "docflow-deploy-test"
VARIABLE = re.compile(r"\$\((\w+)\)")


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Probe:
    kind: str  # livenessProbe, readinessProbe, startupProbe
    container: str
    http_path: str | None = None
    port: int | None = None  # the container port (named ports resolved)
    command: list[str] | None = None


@dataclass
class Workload:
    """One Deployment (or StatefulSet) as podman plays it."""

    name: str
    kind: str
    document: dict
    aliases: list[str]
    grace_seconds: int
    published: dict[int, int] = field(default_factory=dict)  # container port -> 127.0.0.1 port
    probes: list[Probe] = field(default_factory=list)
    pod_id: str = ""

    @property
    def pod_spec(self) -> dict:
        return self.document["spec"]["template"]["spec"]

    def container_name(self, container: str) -> str:
        """What podman names the container (`<pod>-<container>`)."""
        pod = podman("pod", "inspect", self.pod_id, "--format", "{{.Name}}").stdout.strip()
        return f"{pod}-{container}"


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def secret_values(objects: list[dict]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o.get("data", {}).items()}
            for o in objects if o["kind"] == "Secret"}


def config_values(objects: list[dict]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: dict(o.get("data", {})) for o in objects if o["kind"] == "ConfigMap"}


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a variable not (yet) defined stays as written."""
    return VARIABLE.sub(lambda m: env.get(m[1], m[0]), text)


def resolve_env(container: dict, secrets: dict, configs: dict) -> None:
    """Expand $(VAR) in env values and args as the kubelet would, in place."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configs[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            entry["value"] = expand(str(entry["value"]), env)
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[ref["name"]][ref["key"]]
        elif "configMapKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["configMapKeyRef"]
            env[entry["name"]] = configs[ref["name"]][ref["key"]]
    for key in ("command", "args"):
        if key in container:
            container[key] = [expand(str(arg), env) for arg in container[key]]


def take_probes(container: dict) -> list[Probe]:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    probes = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        spec = container.pop(kind, None)
        if spec is None:
            continue
        probe = Probe(kind=kind, container=container["name"])
        for handler in ("httpGet", "tcpSocket"):
            if handler in spec:
                port = spec[handler]["port"]
                probe.port = ports[port] if isinstance(port, str) else int(port)
                probe.http_path = spec[handler].get("path") if handler == "httpGet" else None
        if "exec" in spec:
            probe.command = spec["exec"]["command"]
        probes.append(probe)
    return probes


def workloads(objects: list[dict], cluster_domain: str = "cluster.local") -> list[Workload]:
    """Every Deployment and StatefulSet of the render, made playable."""
    secrets, configs = secret_values(objects), config_values(objects)
    services = [o for o in objects if o["kind"] == "Service"]
    result = []
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        doc = copy.deepcopy(obj)
        name, namespace = doc["metadata"]["name"], doc["metadata"].get("namespace", "default")
        labels = doc["spec"]["template"]["metadata"]["labels"]
        aliases = []
        for service in services:
            if selects(service["spec"].get("selector", {}), labels):
                svc = service["metadata"]["name"]
                aliases += [svc, f"{svc}.{namespace}", f"{svc}.{namespace}.svc",
                            f"{svc}.{namespace}.svc.{cluster_domain}"]
        spec = doc["spec"]["template"]["spec"]
        for template in doc["spec"].pop("volumeClaimTemplates", []):
            claim = f"{template['metadata']['name']}-{name}-0"
            spec.setdefault("volumes", []).append(
                {"name": template["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
        doc.update(kind="Deployment", apiVersion="apps/v1")
        for key in ("serviceName", "podManagementPolicy", "updateStrategy", "strategy"):
            doc["spec"].pop(key, None)
        doc["spec"]["replicas"] = 1
        renamed = {}
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                renamed[volume["name"]] = volume["name"] = f"{name}-{volume['name']}"
        workload = Workload(name=name, kind=obj["kind"], document=doc, aliases=aliases,
                            grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)))
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                mount["name"] = renamed.get(mount["name"], mount["name"])
            resolve_env(container, secrets, configs)
            workload.probes += take_probes(container)
            for port in container.get("ports", []):
                port.update(hostIP="127.0.0.1", hostPort=free_port())
                workload.published[port["containerPort"]] = port["hostPort"]
        result.append(workload)
    return result


def volume_names(workload: Workload) -> list[str]:
    names = []
    for volume in workload.pod_spec.get("volumes", []):
        if "emptyDir" in volume:
            names.append(volume["name"])
        elif "persistentVolumeClaim" in volume:
            names.append(volume["persistentVolumeClaim"]["claimName"])
    return names


class KubeStack:
    """Plays the workloads on their network; down() removes every pod, container,
    volume, secret and the network it made, and says what it could not remove."""

    def __init__(self, objects: list[dict], workdir: Path) -> None:
        self.objects = objects
        self.workdir = workdir
        self.workloads = {w.name: w for w in workloads(objects)}
        self.configmaps = [o for o in objects if o["kind"] == "ConfigMap"]
        self.secrets = {name: {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
                        for name, data in secret_values(objects).items()}
        self.volumes = sorted({v for w in self.workloads.values() for v in volume_names(w)})

    def file_of(self, workload: Workload) -> Path:
        return self.workdir / f"{workload.name}.yaml"

    def up(self, order: list[str]) -> None:
        podman("network", "create", NETWORK)
        for volume in self.volumes:
            podman("volume", "create", volume)
        for name, data in self.secrets.items():
            source = self.workdir / f"secret-{name}.json"
            source.write_text(json.dumps(data))
            podman("secret", "create", name, str(source))
            source.unlink()
        for name in order:
            self.play(self.workloads[name])

    def play(self, workload: Workload) -> None:
        # ConfigMaps go with every pod that reads them (kube play keeps them per play).
        path = self.file_of(workload)
        path.write_text(yaml.safe_dump_all([*self.configmaps, workload.document], sort_keys=False))
        network = f"{NETWORK}:" + ",".join(f"alias={alias}" for alias in workload.aliases) \
            if workload.aliases else NETWORK
        out = podman("kube", "play", "--network", network, str(path)).stdout
        workload.pod_id = out.split("Pod:", 1)[1].split()[0]

    def logs(self, workload: Workload, tail: int = 40) -> str:
        containers = podman("pod", "inspect", workload.pod_id, "--format",
                            "{{range .Containers}}{{.Name}} {{end}}", check=False).stdout.split()
        logs = {c: podman("logs", "--tail", str(tail), c, check=False)
                for c in containers if not c.endswith("-infra")}
        return "\n".join(f"--- {c}\n{result.stdout}{result.stderr}" for c, result in logs.items())

    def down(self) -> list[str]:
        """Tear everything down; what is left afterwards (empty when all is gone)."""
        for workload in self.workloads.values():
            if self.file_of(workload).exists():
                podman("kube", "down", str(self.file_of(workload)), check=False)
        for workload in self.workloads.values():
            if workload.pod_id:
                # A container restarting while its pod goes down can leave its pod behind
                # ("shm: device or resource busy"): try again.
                for _ in range(5):
                    if podman("pod", "exists", workload.pod_id, check=False).returncode != 0:
                        break
                    podman("pod", "rm", "-f", "-t", "5", workload.pod_id, check=False)
                    time.sleep(1)
        for volume in self.volumes:
            podman("volume", "rm", "-f", volume, check=False)
        for name in self.secrets:
            podman("secret", "rm", name, check=False)
        podman("network", "rm", "-f", NETWORK, check=False)
        return self.leftovers()

    def leftovers(self) -> list[str]:
        left = [f"pod {w.pod_id}" for w in self.workloads.values()
                if w.pod_id and podman("pod", "exists", w.pod_id, check=False).returncode == 0]
        containers = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
        left += [f"container {c}" for c in containers
                 if any(c.startswith(f"{name}-pod") for name in self.workloads)]
        existing = set(podman("volume", "ls", "--format", "{{.Name}}").stdout.split())
        left += [f"volume {v}" for v in self.volumes if v in existing]
        secrets = set(podman("secret", "ls", "--format", "{{.Name}}").stdout.split())
        left += [f"secret {s}" for s in self.secrets if s in secrets]
        if podman("network", "exists", NETWORK, check=False).returncode == 0:
            left.append(f"network {NETWORK}")
        return left
