"""Worker metrics in prometheus_client's multiprocess mode, on a real prefork worker.

A worker built by `create_worker_app` runs probe tasks in two pool children; its main
process serves /metrics. What the children counted must show up there, summed; a
previous run's files must not; and a child killed mid-task must not stay "in progress".
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from docflow.devstack.processes import free_port, wait_until
from docflow.shared.celery_app import create_celery_app
from docflow.shared.queue_stats import message_enqueued_at, read_queue_stats
from docflow.shared.settings import Settings
from docflow.shared.tracing import ACCEPTED_AT, ENQUEUED_AT, REQUEST_ID, stamp_headers
from docflow.shared.worker_metrics import queue_wait_seconds

PROBE_QUEUE = "probe"
SINK_QUEUE = "probe.sink"

PROBE_MODULE = textwrap.dedent('''
    """Probe tasks for a real worker built the way every docflow worker is."""
    import os
    import time

    import redis
    from celery.exceptions import Ignore

    from docflow.shared.errors import ErrorCode, PermanentError
    from docflow.shared.names import Stage
    from docflow.shared.settings import get_settings
    from docflow.shared.worker import create_worker_app

    app = create_worker_app(Stage.EMBED, include=[])
    client = redis.Redis.from_url(get_settings().redis_url)


    @app.task(name="docflow.probe.sleep")
    def sleep(seconds):
        time.sleep(seconds)
        return os.getpid()


    @app.task(name="docflow.probe.fail")
    def fail():
        raise PermanentError(ErrorCode.CORRUPT_FILE, "not a document")


    @app.task(name="docflow.probe.retry_once", bind=True)
    def retry_once(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return "second time lucky"


    @app.task(name="docflow.probe.stale")
    def stale():
        raise Ignore()  # what a run of a deleted or reprocessed document does


    @app.task(name="docflow.probe.fan_out", bind=True)
    def fan_out(self):
        raise self.replace(sleep.si(0).set(queue="probe"))  # as the extractor's PDF fan-out does


    @app.task(name="docflow.probe.forward")
    def forward():
        app.send_task("docflow.probe.sink", queue="probe.sink")


    @app.task(name="docflow.probe.hang_once")
    def hang_once():
        """Hangs on its first run (to be killed), returns at once when redelivered."""
        if client.incr("probe:hang_runs") == 1:
            client.set("probe:hang_pid", os.getpid())
            time.sleep(120)
        return "redelivered"
''')


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url, timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def task_labels(task: str) -> dict[str, str]:
    return {"stage": "embed", "task": f"docflow.probe.{task}"}


def write_stale_counter(multiproc_dir: Path) -> None:
    """What a previous container left behind: a counter file with a large count."""
    script = ("from docflow.shared import metrics; "
              "metrics.TASKS_STARTED.labels('embed', 'docflow.probe.sleep').inc(1000)")
    subprocess.run([sys.executable, "-c", script], check=True,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)})
    assert list(multiproc_dir.glob("counter_*.db"))


@pytest.fixture
def probe_worker(redis_server, redis_client, tmp_path: Path) -> Iterator[SimpleNamespace]:
    (tmp_path / "docflow_metrics_probe.py").write_text(PROBE_MODULE)
    multiproc_dir = tmp_path / "metrics"
    multiproc_dir.mkdir()
    write_stale_counter(multiproc_dir)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "DOCFLOW_REDIS_URL": redis_server.url,
           "DOCFLOW_METRICS_HOST": "127.0.0.1", "DOCFLOW_METRICS_PORT": str(port),
           "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "docflow_metrics_probe", "worker", "-Q", PROBE_QUEUE,
             "-n", "probe@%h", "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle"],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/metrics"
    producer = create_celery_app("probe-producer", Settings(redis_url=redis_server.url))
    try:
        wait_until(lambda: value(scrape(url), "docflow_worker_up", stage="embed", queue="docflow.embed") == 1,
                   60, "probe worker", process)
        yield SimpleNamespace(url=url, producer=producer, process=process, log=log_path, dir=multiproc_dir)
    finally:
        producer.close()
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def send(worker, task: str, *args):
    return worker.producer.send_task(f"docflow.probe.{task}", args=list(args), queue=PROBE_QUEUE)


def test_two_pool_children_are_counted_together_and_a_previous_run_is_not(probe_worker):
    results = [send(probe_worker, "sleep", 0.5) for _ in range(6)]
    pids = {result.get(timeout=60) for result in results}
    assert len(pids) == 2, "both pool children ran tasks"

    samples = scrape(probe_worker.url)
    sleep = task_labels("sleep")
    assert value(samples, "docflow_tasks_started_total", **sleep) == 6, "the stale 1000 were emptied at start"
    assert value(samples, "docflow_tasks_succeeded_total", **sleep) == 6
    assert value(samples, "docflow_task_duration_seconds_count", **sleep) == 6
    assert value(samples, "docflow_task_duration_seconds_sum", **sleep) >= 6 * 0.5
    assert value(samples, "docflow_task_queue_wait_seconds_count", **sleep) == 6
    assert value(samples, "docflow_tasks_in_progress", **sleep) == 0
    assert value(samples, "docflow_worker_concurrency", stage="embed", queue="docflow.embed") == 2
    assert value(samples, "docflow_worker_up", stage="embed", queue="docflow.embed") == 1
    # Every task of the worker has its series from the start, at zero.
    assert ("docflow_tasks_retried_total", tuple(sorted(task_labels("fail").items()))) in samples


def test_a_running_task_is_in_progress_in_the_main_processs_view(probe_worker):
    result = send(probe_worker, "sleep", 3)
    in_progress = "docflow_tasks_in_progress"
    wait_until(lambda: value(scrape(probe_worker.url), in_progress, **task_labels("sleep")) == 1,
               20, "the task to show as in progress")
    result.get(timeout=30)
    assert value(scrape(probe_worker.url), "docflow_tasks_in_progress", **task_labels("sleep")) == 0


def test_failures_retries_skips_and_replacements_are_told_apart(probe_worker):
    with pytest.raises(Exception, match="corrupt_file"):
        send(probe_worker, "fail").get(timeout=30)
    assert send(probe_worker, "retry_once").get(timeout=30) == "second time lucky"
    send(probe_worker, "stale")
    send(probe_worker, "fan_out")
    wait_until(lambda: value(scrape(probe_worker.url), "docflow_tasks_succeeded_total", **task_labels("sleep")),
               30, "the replacement task to run")
    samples = scrape(probe_worker.url)
    assert value(samples, "docflow_tasks_skipped_total", **task_labels("stale")) == 1
    assert value(samples, "docflow_tasks_succeeded_total", **task_labels("fan_out")) == 1
    assert value(samples, "docflow_tasks_skipped_total", **task_labels("fan_out")) == 0
    assert value(samples, "docflow_tasks_failed_total", **task_labels("fail"), error_code="corrupt_file") == 1
    assert value(samples, "docflow_tasks_retried_total", **task_labels("retry_once")) == 1
    assert value(samples, "docflow_tasks_started_total", **task_labels("retry_once")) == 2
    assert value(samples, "docflow_tasks_succeeded_total", **task_labels("retry_once")) == 1


def test_a_child_killed_mid_task_is_not_left_in_progress(probe_worker, redis_client):
    result = send(probe_worker, "hang_once")
    wait_until(lambda: redis_client.get("probe:hang_pid"), 20, "the task to start")
    assert value(scrape(probe_worker.url), "docflow_tasks_in_progress", **task_labels("hang_once")) == 1
    os.kill(int(redis_client.get("probe:hang_pid")), signal.SIGKILL)  # the OOM killer, say
    assert result.get(timeout=60) == "redelivered"  # acks_late + reject_on_worker_lost
    assert value(scrape(probe_worker.url), "docflow_tasks_in_progress", **task_labels("hang_once")) == 0


def test_request_id_and_accepted_at_follow_a_task_onto_what_it_publishes(probe_worker, redis_client):
    structlog.contextvars.bind_contextvars(request_id="req-probe-1")
    try:
        send(probe_worker, "forward").get(timeout=30)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    (raw,) = redis_client.lrange(SINK_QUEUE, 0, -1)
    headers = json.loads(raw)["headers"]
    assert headers[REQUEST_ID] == "req-probe-1"
    assert headers[ACCEPTED_AT] <= headers[ENQUEUED_AT] <= time.time()
    assert message_enqueued_at(raw) == headers[ENQUEUED_AT]


# --- the pieces, without a worker ----------------------------------------------------------
def test_a_root_publish_gets_the_bound_request_id_or_a_new_one():
    structlog.contextvars.bind_contextvars(request_id="req-42")
    try:
        headers: dict = {}
        stamp_headers(headers=headers)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    assert headers[REQUEST_ID] == "req-42"
    assert headers[ACCEPTED_AT] == headers[ENQUEUED_AT]

    other: dict = {}
    stamp_headers(headers=other)
    assert other[REQUEST_ID] and other[REQUEST_ID] != "req-42"


def test_a_republished_message_gets_a_fresh_enqueue_time():
    headers = {REQUEST_ID: "r", ACCEPTED_AT: 100.0, ENQUEUED_AT: 100.0}  # a retry re-sends its headers
    stamp_headers(headers=headers)
    assert headers[ACCEPTED_AT] == 100.0
    assert headers[ENQUEUED_AT] > time.time() - 5


def test_queue_wait_counts_from_the_eta_of_a_delayed_retry():
    now = time.time()
    request = SimpleNamespace(headers={ENQUEUED_AT: now - 60},
                              eta=(datetime.now(UTC) - timedelta(seconds=5)).isoformat())
    assert 4 < queue_wait_seconds(request, now) < 6
    assert queue_wait_seconds(SimpleNamespace(headers={ENQUEUED_AT: now - 60}, eta=None), now) == 60
    assert queue_wait_seconds(SimpleNamespace(headers=None, eta=None), now) is None


def test_a_message_without_enqueue_time_has_an_unknown_age(redis_client):
    redis_client.lpush("docflow.embed", json.dumps({"headers": {}, "body": ""}))
    stats = {s.queue: s for s in read_queue_stats(redis_client)}
    assert stats["docflow.embed"].backlog == 1
    assert stats["docflow.embed"].oldest_age_seconds is None
    assert stats["docflow.extract"].oldest_age_seconds == 0.0
