"""`make run` (python -m docflow.devstack) keeps going when one of its processes exits.

Before, one worker exiting stopped the whole local stack. Now the process is started
again after a backoff that doubles (up to a cap) while it keeps dying, and the
console says what exited, with which code, and when it comes back.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from docflow.devstack.processes import Process, free_port
from docflow.devstack.supervisor import Supervisor


def test_a_process_that_keeps_dying_is_restarted_with_a_doubling_backoff(tmp_path):
    said: list[str] = []
    exit_times: list[float] = []
    supervisor = Supervisor(say=lambda line: said.append(line) or ("exited" in line and exit_times.append(
        time.monotonic())), base=0.2, cap=0.8, stable_after=30)

    def start() -> Process:
        return Process("crashy", ["sh", "-c", "exit 3"], log_path=tmp_path / "crashy.log").start()

    supervisor.watch("crashy", start(), start, tmp_path / "crashy.log")
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and sum("exited" in line for line in said) < 5:
        supervisor.check()
        time.sleep(0.02)

    exits = [line for line in said if "exited" in line]
    assert exits[0] == (f"docflow: crashy exited (code 3); restarting it in 0.2 s (restart 1 in a row); "
                        f"its log: {tmp_path / 'crashy.log'}")
    waits = [float(re.search(r"in ([\d.]+) s", line).group(1)) for line in exits]
    assert waits[:5] == [0.2, 0.4, 0.8, 0.8, 0.8], said
    assert sum("crashy restarted (pid" in line for line in said) >= 4
    # Each restart really waited its delay: 0.2 + 0.4 + 0.8 + 0.8 s between the first and the fifth exit.
    assert exit_times[4] - exit_times[0] >= 2.2


def test_a_process_that_ran_long_enough_starts_again_from_the_first_delay(tmp_path):
    said: list[str] = []
    supervisor = Supervisor(say=said.append, base=0.2, cap=5, stable_after=0.5)

    def start() -> Process:  # up for a second, then gone: longer than stable_after
        return Process("flaky", ["sh", "-c", "sleep 1; exit 1"]).start()

    supervisor.watch("flaky", start(), start)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        supervisor.check()
        time.sleep(0.02)
    exits = [line for line in said if "exited" in line]
    assert len(exits) >= 2 and all("in 0.2 s (restart 1 in a row)" in line for line in exits), said


def _children(parent: int) -> dict[int, str]:
    """Direct children of `parent`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def _wait_for_line(path: Path, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text(errors="replace"))
        if match:
            return match
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path.name} after {timeout:.0f} s:\n{path.read_text()[-3000:]}")


@pytest.fixture
def make_run(tmp_path):
    """`python -m docflow.devstack` as `make run` starts it, in the durable mode."""
    port = free_port()
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    env = {**os.environ, "DOCFLOW_DATA_DIR": str(tmp_path / "data"), "DOCFLOW_GATEWAY_PORT": str(port),
           "DOCFLOW_EMBEDDER": "hash", "DOCFLOW_OCR_LANGUAGES": "eng", "DOCFLOW_REDIS_APPENDFSYNC": "always"}
    env.pop("DOCFLOW_REDIS_URL", None)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        main = subprocess.Popen([sys.executable, "-m", "docflow.devstack"], env=env, stdout=stdout, stderr=stderr,
                                start_new_session=True)
    try:
        _wait_for_line(out, r"docflow is running", 240)
        yield main, out, err, f"http://127.0.0.1:{port}"
    finally:
        if main.poll() is None:
            main.send_signal(signal.SIGTERM)
            try:
                main.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(main.pid, signal.SIGKILL)
                main.wait()


def test_make_run_restarts_a_killed_worker_says_so_and_keeps_serving(make_run):
    main, out, err, gateway_url = make_run
    # The durable mode reached the bundled redis-server.
    redis_url = _wait_for_line(out, r"Redis:\s+(redis://\S+)", 5).group(1)
    assert redis.Redis.from_url(redis_url, decode_responses=True).config_get("appendfsync") == {"appendfsync": "always"}

    [extractor] = [pid for pid, argv in _children(main.pid).items() if "-n extractor@" in argv]
    os.killpg(extractor, signal.SIGKILL)  # the worker and its pool, as the OOM killer or a crash would

    _wait_for_line(err, r"docflow: extractor exited \(code -9\); restarting it in 1 s \(restart 1 in a row\); "
                        r"its log: \S+extractor\.log", 30)
    _wait_for_line(err, r"docflow: extractor restarted \(pid \d+\)", 30)
    assert main.poll() is None, "the stack stopped"
    [restarted] = [pid for pid, argv in _children(main.pid).items() if "-n extractor@" in argv]
    assert restarted != extractor

    # The whole pipeline still works through the restarted extractor.
    auth = {"Authorization": "Bearer dev-key"}
    upload = httpx.post(f"{gateway_url}/v1/documents", headers=auth, timeout=30,
                        files={"file": ("after.txt", b"Written after the extractor came back.\n", "text/plain")})
    assert upload.status_code == 202, upload.text
    document_id = upload.json()["document_id"]
    deadline = time.monotonic() + 180
    while (status := httpx.get(f"{gateway_url}/v1/documents/{document_id}", headers=auth,
                               timeout=30).json()["status"]) not in {"completed", "failed"}:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status == "completed"

    main.send_signal(signal.SIGTERM)
    assert main.wait(90) == 0
    assert _children(main.pid) == {}
