"""A real Prometheus (Debian's `prometheus` package) scraping the local stack.

It scrapes the gateway's /metrics and each worker's metrics port (a stage's query-only
and maintenance workers too) under the job names
the Helm chart's monitors produce (gateway, extractor, embedder, indexer), and loads
the chart's alert rules, so dashboards and alerts can be tried on the real services.
"""

import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from docflow.devstack.processes import Process, free_port, wait_until
from docflow.devstack.stack import LocalStack
from docflow.shared.names import SERVICE_OF_STAGE


class LocalPrometheus:
    def __init__(self, stack: LocalStack, data_dir: Path, rule_files: list[Path],
                 scrape_interval: str = "1s") -> None:
        self.stack = stack
        self.data_dir = data_dir
        self.rule_files = rule_files
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        def job(name: str, *ports: int) -> dict[str, Any]:
            return {"job_name": name, "metrics_path": "/metrics",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in ports]}]}

        # A service's query-only and maintenance workers are its job's other targets
        # (the index-health metrics come from the maintenance worker alone).
        def side_ports(stage) -> list[int]:
            return [port for (side_stage, _), port in self.stack.side_metrics_ports.items() if side_stage is stage]

        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval,
                       "scrape_timeout": self.scrape_interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [job("gateway", self.stack.gateway_port)] + [
                job(SERVICE_OF_STAGE[stage], port, *side_ports(stage))
                for stage, port in self.stack.metrics_ports.items()],
        }

    def start(self, timeout: float = 60) -> "LocalPrometheus":
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run scripts/bootstrap.sh "
                               "(Debian package prometheus)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        self.process = Process("prometheus", [
            binary, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ], log_path=self.data_dir / "prometheus.log").start()
        wait_until(lambda: httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200, timeout,
                   "prometheus", self.process.popen)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    # --- the HTTP API ---------------------------------------------------------------------
    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.api("rules")["groups"]

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values"))
