"""`make run`: start the local stack in the foreground until Ctrl-C.

Uses the redis-server at DOCFLOW_REDIS_URL when that is set, else starts its own
(with AOF persistence) under DOCFLOW_DATA_DIR (default .data/). A process that
exits is started again after a backoff, announced on stderr (supervisor.py).
"""

import os
import signal
import sys
import time
from pathlib import Path

from docflow.devstack.processes import Process
from docflow.devstack.stack import DEV_API_KEYS, LocalStack, worker_name
from docflow.devstack.supervisor import Supervisor
from docflow.shared.names import SERVICE_OF_STAGE


def supervise(stack: LocalStack) -> Supervisor:
    """Every process of the stack, each restarted with a backoff when it exits."""
    supervisor = Supervisor(say=lambda line: print(line, file=sys.stderr, flush=True))
    if stack.redis is not None:
        redis = stack.redis

        def start_redis() -> Process:
            redis.start()  # the same port and data folder: the AOF brings the queues back
            assert redis.process is not None
            return redis.process

        supervisor.watch("redis", redis.process, start_redis, redis.data_dir / "redis.log")
    for stage, process in stack.workers.items():
        name = SERVICE_OF_STAGE[stage]
        supervisor.watch(name, process, lambda stage=stage: stack.start_worker(stage), stack.logs_dir / f"{name}.log")
    for (stage, role), process in stack.side_workers.items():
        name = worker_name(stage, role)
        supervisor.watch(name, process, lambda stage=stage, role=role: stack.start_side_worker(stage, role),
                         stack.logs_dir / f"{name}.log")
    supervisor.watch("gateway", stack.gateway, stack.start_gateway, stack.logs_dir / "gateway.log")
    return supervisor


def main() -> int:
    env = {k: v for k, v in os.environ.items() if k.startswith("DOCFLOW_")}
    stack = LocalStack(
        data_dir=Path(os.environ.get("DOCFLOW_DATA_DIR", ".data")),
        env=env,
        gateway_port=int(os.environ.get("DOCFLOW_GATEWAY_PORT", "8000")),
        redis_url=os.environ.get("DOCFLOW_REDIS_URL"),
    )
    stopping = False

    def request_stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print("Starting docflow: redis, extractor, embedder (+ query), indexer (+ query, maintenance, notify), "
          "gateway ...", flush=True)
    stack.start()
    api_key = env.get("DOCFLOW_API_KEYS", DEV_API_KEYS).split(",")[0].split("=")[0]
    worker_metrics = "".join(f"\n            {stack.metrics_url(stage)}   ({SERVICE_OF_STAGE[stage]})"
                             for stage in stack.metrics_ports)
    worker_metrics += "".join(f"\n            {stack.metrics_url(stage, role)}   ({worker_name(stage, role)})"
                              for stage, role in stack.side_metrics_ports)
    print(f"""
docflow is running.
  Gateway:  {stack.gateway_url}   (API docs: {stack.gateway_url}/docs)
  API key:  {api_key}
  Redis:    {stack.redis_url}
  Metrics:  {stack.gateway_url}/metrics   (gateway and queues){worker_metrics}
  Logs:     {stack.logs_dir}/

Try:  curl -H 'Authorization: Bearer {api_key}' -F file=@README.md {stack.gateway_url}/v1/documents
      DOCFLOW_URL={stack.gateway_url} DOCFLOW_API_KEY={api_key} .venv/bin/docflow ingest README.md
Press Ctrl-C to stop.
""", flush=True)
    supervisor = supervise(stack)
    try:
        while not stopping:
            supervisor.check()
            time.sleep(0.5)
    finally:
        print("\nStopping docflow ...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
