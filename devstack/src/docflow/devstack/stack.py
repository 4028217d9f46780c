"""The local stack: redis-server, the Celery workers of every stage, and the gateway.

Each stage runs its document worker; the embedder and the indexer also run a
query-only worker (searches never wait for a document task), and the indexer a
maintenance worker (Queue.MAINTENANCE, one run at a time) and a notify worker
(Queue.WEBHOOKS: webhook deliveries and their dispatcher), as the chart does.

`make run` starts it in the foreground; the end-to-end tests start the very same
stack, so what the tests prove is what a user runs.
"""

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from celery import Celery

from docflow.devstack.processes import Process, free_port, wait_until
from docflow.devstack.redis_server import RedisServer
from docflow.shared.celery_app import create_celery_app
from docflow.shared.names import SERVICE_OF_STAGE, Stage, WorkerRole, pool_of_role, queues_of_role, roles_of_stage
from docflow.shared.settings import Settings

DEV_API_KEYS = "dev-key=dev"
# The niceness of the document and maintenance workers (Settings.worker_nice).
BACKGROUND_NICE = 10
# Threads of the indexer's document worker (the chart's indexer.concurrency): the
# documents indexed side by side share LanceDB commits, up to this many a commit.
INDEX_THREADS = 8


def worker_name(stage: Stage, role: WorkerRole = WorkerRole.DOCUMENT) -> str:
    """A worker's name before the @: the service for its document worker (what Celery's
    node name, the logs and the chart call it), `<service>-<role>` for the others."""
    service = SERVICE_OF_STAGE[stage]
    return service if role is WorkerRole.DOCUMENT else f"{service}-{role.value}"


def worker_argv(stage: Stage, concurrency: int = 1, node: str | None = None,
                role: WorkerRole = WorkerRole.DOCUMENT) -> list[str]:
    """The command that runs one of a stage's workers on its role's queues only."""
    service = SERVICE_OF_STAGE[stage]
    return [
        sys.executable, "-m", "celery", "-A", f"docflow.{service}.worker", "worker",
        "-Q", ",".join(q.value for q in queues_of_role(stage, role)), "-n", node or f"{worker_name(stage, role)}@%h",
        "--pool", pool_of_role(stage, role), "--concurrency", str(concurrency), "--loglevel", "INFO",
        # Gossip and mingle sync state between workers at start-up; a stage's workers
        # share nothing that needs it, and skipping it makes start-up seconds faster.
        "--without-gossip", "--without-mingle",
    ]


def default_concurrency(stage: Stage, embedder: str) -> int:
    """Pool processes of a stage's worker in the local stack.

    The MiniLM embedder runs one model per core, each single-threaded: documents are
    embedded side by side, which on 2 cores beats one process with torch's 2 intra-op
    threads (they scale poorly on MiniLM's small matrices, and stall at every barrier
    when the extractor or the indexer takes a core); a process embedding alone still
    uses every core (docflow.embedder.loaded_provider.thread_budget). Everything else
    (and an embedder that only calls an API or hashes) needs one process; the
    indexer's document worker runs INDEX_THREADS threads (names.pool_of_role).
    """
    if stage is Stage.EMBED and embedder == "minilm":
        return len(os.sched_getaffinity(0))
    if stage is Stage.INDEX:
        return INDEX_THREADS
    return 1


@dataclass
class LocalStack:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    gateway_port: int | None = None
    redis_url: str | None = None
    redis: RedisServer | None = None
    workers: dict[Stage, Process] = field(default_factory=dict)
    # Each stage's worker serves /metrics on its own port (a pod's DOCFLOW_METRICS_PORT).
    metrics_ports: dict[Stage, int] = field(default_factory=dict)
    gateway: Process | None = None
    # The query-only and maintenance workers, by (stage, role).
    side_workers: dict[tuple[Stage, WorkerRole], Process] = field(default_factory=dict)
    side_metrics_ports: dict[tuple[Stage, WorkerRole], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.logs_dir = self.data_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.gateway_port = self.gateway_port or int(self.env.get("DOCFLOW_GATEWAY_PORT", 0)) or free_port()

    # --- configuration ---------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def process_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DOCFLOW_STORAGE_PATH": str(self.data_dir / "storage"),
            "DOCFLOW_LANCEDB_URI": str(self.data_dir / "lancedb"),
            "DOCFLOW_API_KEYS": DEV_API_KEYS,
            # The bundled model must never reach for the network.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        env["DOCFLOW_GATEWAY_PORT"] = str(self.gateway_port)
        # Only workers (prefork) use prometheus_client's multiprocess mode.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if self.redis_url:
            env["DOCFLOW_REDIS_URL"] = self.redis_url
        return env

    def metrics_url(self, stage: Stage, role: WorkerRole = WorkerRole.DOCUMENT) -> str:
        port = self.metrics_ports[stage] if role is WorkerRole.DOCUMENT else self.side_metrics_ports[(stage, role)]
        return f"http://127.0.0.1:{port}/metrics"

    def worker_env(self, stage: Stage, role: WorkerRole = WorkerRole.DOCUMENT) -> dict[str, str]:
        """A worker's environment: its own metrics port, and a fresh multiprocess
        directory for prometheus_client, set before Python starts (docs/architecture.md)."""
        workers, ports, key = ((self.workers, self.metrics_ports, stage) if role is WorkerRole.DOCUMENT
                               else (self.side_workers, self.side_metrics_ports, (stage, role)))
        previous = workers.get(key)
        if key not in ports or (previous is not None and previous.alive()):
            ports[key] = free_port()
        port = ports[key]
        multiproc_dir = self.data_dir / "metrics" / f"{worker_name(stage, role)}-{port}"
        shutil.rmtree(multiproc_dir, ignore_errors=True)
        multiproc_dir.mkdir(parents=True)
        # Documents and maintenance yield the CPU to the query-only workers (as the chart's
        # `nice` values do): a search under a bulk ingest is served almost as when idle.
        nice = {} if role is WorkerRole.QUERY else {"DOCFLOW_WORKER_NICE": str(BACKGROUND_NICE)}
        return {**nice, **self.process_env(), "DOCFLOW_METRICS_HOST": "127.0.0.1",
                "DOCFLOW_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}

    def settings(self) -> Settings:
        env = self.process_env()
        prefixed = {k[len("DOCFLOW_"):].lower(): v for k, v in env.items() if k.startswith("DOCFLOW_")}
        return Settings(**prefixed)

    def celery(self) -> Celery:
        """A producer/control client of the stack's broker (for readiness and tests)."""
        return create_celery_app("devstack", self.settings())

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "LocalStack":
        try:
            if not self.redis_url:
                self.redis = RedisServer(self.data_dir / "redis",
                                         appendfsync=self.settings().redis_appendfsync).start()
                self.redis_url = self.redis.url
            for stage in Stage:
                self.start_worker(stage)
            for stage, role in self.side_roles():
                self.start_side_worker(stage, role)
            self.start_gateway()
            for stage in Stage:
                self.wait_for_worker(stage)
            for stage, role in self.side_roles():
                self.wait_for_worker(stage, role)
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, stage: Stage, concurrency: int | None = None) -> Process:
        service = SERVICE_OF_STAGE[stage]
        concurrency = concurrency or default_concurrency(
            stage, self.process_env().get("DOCFLOW_EMBEDDER", Settings.model_fields["embedder"].default))
        process = Process(service, worker_argv(stage, concurrency), self.worker_env(stage),
                          self.logs_dir / f"{service}.log").start()
        self.workers[stage] = process
        return process

    def side_roles(self) -> list[tuple[Stage, WorkerRole]]:
        """The query-only, maintenance and notify workers this stack runs."""
        return [(stage, role) for stage in Stage for role in roles_of_stage(stage) if role is not WorkerRole.DOCUMENT]

    def start_side_worker(self, stage: Stage, role: WorkerRole) -> Process:
        """A query-only or maintenance worker: one process each. The query embedder
        loads its own copy of the model (~100 MB+), so one is what a laptop can spare;
        maintenance must run one at a time anyway (the per-tenant lock makes sure)."""
        name = worker_name(stage, role)
        process = Process(name, worker_argv(stage, 1, role=role), self.worker_env(stage, role),
                          self.logs_dir / f"{name}.log").start()
        self.side_workers[(stage, role)] = process
        return process

    def wait_for_worker(self, stage: Stage, role: WorkerRole = WorkerRole.DOCUMENT, timeout: float = 120) -> None:
        """Until the worker answers a broadcast ping (it consumes its queues)."""
        name = worker_name(stage, role)
        process = self.workers[stage] if role is WorkerRole.DOCUMENT else self.side_workers[(stage, role)]
        app = self.celery()
        try:
            wait_until(lambda: any(
                node.startswith(f"{name}@") for reply in app.control.ping(timeout=1.0) for node in reply
            ), timeout, f"{name} worker", process.popen)
        finally:
            app.close()

    def start_gateway(self) -> Process:
        self.gateway = Process("gateway", [sys.executable, "-m", "docflow.gateway"],
                               self.process_env(), self.logs_dir / "gateway.log").start()
        wait_until(lambda: httpx.get(f"{self.gateway_url}/healthz", timeout=1).status_code == 200,
                   60, "gateway", self.gateway.popen)
        return self.gateway

    def stop(self) -> None:
        if self.gateway:
            self.gateway.stop()
        for process in [*self.workers.values(), *self.side_workers.values()]:
            process.stop()
        if self.redis:
            self.redis.stop()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
