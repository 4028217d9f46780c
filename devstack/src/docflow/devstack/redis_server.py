"""A private redis-server for the local stack and the tests (AOF on, on a free port).

`appendfsync` is what a 202 is worth on a power loss (docs/reliability.md, "Durable
acceptance"): `everysec` (the default) may lose the last second of accepted documents,
`always` none, since Redis fsyncs the AOF before it answers a write.
"""

import shutil
from pathlib import Path
from typing import get_args

import redis

from docflow.devstack.processes import Process, free_port, wait_until
from docflow.shared.settings import RedisAppendFsync

APPENDFSYNC_MODES = get_args(RedisAppendFsync)


class RedisServer:
    def __init__(self, data_dir: Path, port: int | None = None,
                 appendfsync: RedisAppendFsync = "everysec") -> None:
        if appendfsync not in APPENDFSYNC_MODES:
            raise ValueError(f"appendfsync must be one of {', '.join(APPENDFSYNC_MODES)}, not {appendfsync!r}")
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make install`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = Process("redis", [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            # Durable like production: an accepted document survives a restart.
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
            "--daemonize", "no", "--protected-mode", "yes",
        ], log_path=self.data_dir / "redis.log").start()
        client = redis.Redis.from_url(self.url)
        wait_until(client.ping, 20, "redis-server", self.process.popen)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
