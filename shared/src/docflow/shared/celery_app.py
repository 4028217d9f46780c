"""The one Celery configuration, shared by the gateway (producer) and every worker.

Each line encodes a fact from docs/architecture.md: JSON only; acks late and requeue on a lost
worker (at-least-once); no prefetch, so a busy fleet's backlog stays in the Redis
list KEDA measures; one priority step, so `LLEN queue` is the whole backlog; a
visibility timeout above every hard time limit.
"""

from celery import Celery, states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

from docflow.shared import redis_transport
from docflow.shared.names import STAGE_OF_TASK, TASK_ROUTES, Task
from docflow.shared.redis_connection import tls_options
from docflow.shared.settings import Settings
from docflow.shared.tracing import install_publish_hook


def broker_transport_options(settings: Settings) -> dict:
    return {
        # kombu spreads prioritised messages over extra keys (`queue\x06\x163`...);
        # a single step keeps the backlog in the one list named after the queue.
        "priority_steps": [0],
        "visibility_timeout": settings.visibility_timeout,
        # Sweep for messages a dead worker held (older than the visibility timeout)
        # every 10 s instead of kombu's default of every 100 s.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }


# Celery's store, in one script: never overwrite a SUCCESS (a lost twin of a finished
# task must not), else SETEX (SET without expiry) and PUBLISH to the result's waiters.
# KEYS[1] = result key; ARGV: encoded meta, seconds to keep (0 = forever).
_STORE_UNLESS_SUCCEEDED_LUA = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class WorkerResultBackend(RedisBackend):
    """Celery's Redis result backend, storing a task state in one round trip, not two.

    The stock backend GETs a task's stored state before every store (STARTED and the
    outcome: twice per task) so as not to overwrite a SUCCESS, then writes it: two
    round trips per store, on every task, where a small document's whole work costs
    a few milliseconds. The same check and write run here as one Lua script, which
    also makes the check atomic. Reads, chords and groups are the stock backend's.
    """

    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError("value too large for Redis backend", state=state, task_id=task_id)
        expires = self.failure_expires if state == states.FAILURE else self.expires
        self.ensure(self._store_unless_succeeded, (self.get_key_for_task(task_id), value, expires))
        return result

    def _store_unless_succeeded(self, key, value, expires) -> None:
        self.client.eval(_STORE_UNLESS_SUCCEEDED_LUA, 1, key, value, int(expires or 0))


def worker_result_backend(settings: Settings) -> str:
    """The `result_backend` setting of a worker: Celery's `module:Class+url` form."""
    return f"{__name__}:{WorkerResultBackend.__name__}+{settings.redis_url}"


def task_time_limits(settings: Settings) -> dict[str, tuple[int, int]]:
    """(soft, hard) seconds of every docflow task, by name: what the workers enforce
    (the app's task_annotations) and what the gateway's recovery reads to know when a
    delivery has outlived any run of its task (docflow.gateway.recovery). Maintenance
    has limits of its own (its runs compact whole tables)."""
    limits = {task.value: settings.time_limits(stage) for task, stage in STAGE_OF_TASK.items()}
    limits[Task.MAINTAIN.value] = (settings.maintain_soft_time_limit, settings.maintain_time_limit)
    return limits


# Tasks whose outcome nobody reads (GET /v1/tasks reads the document stages' only): a
# stored result would sit in Redis for result_expires, one per delete or PATCH.
_RESULTS_IGNORED = (Task.DELETE_DOCUMENT, Task.UPDATE_METADATA, Task.MAINTAIN, Task.DELIVER_WEBHOOK,
                    # A re-embed's steps and documents report through its job in Redis.
                    Task.REEMBED_TENANT, Task.REEMBED_EMBED, Task.REEMBED_INDEX, Task.DROP_GENERATION)


def create_celery_app(name: str, settings: Settings) -> Celery:
    app = Celery(f"docflow-{name}", broker=settings.redis_url, backend=settings.redis_url)
    # Every producer (the gateway, each worker) stamps request id and enqueue time.
    install_publish_hook()
    annotations = {task: {"soft_time_limit": soft, "time_limit": hard}
                   for task, (soft, hard) in task_time_limits(settings).items()}
    for task in _RESULTS_IGNORED:
        annotations[task.value]["ignore_result"] = True
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Ack (and so end) a failed or timed-out task instead of requeueing it: the
        # failure is recorded on the document and, for transient ones, dead-lettered.
        task_acks_on_failure_or_timeout=True,
        worker_disable_prefetch=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=broker_transport_options(settings),
        result_backend_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_routes=TASK_ROUTES,
        task_annotations=annotations,
        task_track_started=True,
        result_expires=settings.result_expires_seconds,
        worker_concurrency=settings.worker_concurrency,
        # structlog owns logging (see docflow.shared.logging).
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # Redelivered tasks after a lost connection would otherwise run twice at once.
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    if settings.redis_url.partition("://")[0] in redis_transport.SCHEMES:
        # kombu's Redis transport, minus a client object per command (redis_transport.py).
        app.conf.broker_transport = redis_transport.TRANSPORT
    tls = tls_options(settings)
    if tls:  # rediss://: the broker and the result backend verify the same way
        app.conf.update(broker_use_ssl=tls, redis_backend_use_ssl=tls)
    return app
