"""The gateway's Celery app: the shared configuration, tuned for a producer.

The gateway publishes chains and reads task states; it never runs tasks. Two things
differ from a worker, and both are about what happens when Redis is slow or gone:
connection attempts are bounded so a request fails fast (503) instead of hanging,
and results are read by polling instead of a pub/sub subscription per task.
"""

from celery import Celery
from celery.backends.redis import RedisBackend

from docflow.shared.celery_app import broker_transport_options, create_celery_app
from docflow.shared.settings import Settings

CONNECT_TIMEOUT_SECONDS = 3.0
SOCKET_TIMEOUT_SECONDS = 10.0


class PollingRedisBackend(RedisBackend):
    """The Redis result backend without the subscription made at publish time.

    The stock backend SUBSCRIBEs to the result channel of every task this process
    publishes, expecting the caller to wait on it. The gateway never waits on
    pipeline tasks, so those subscriptions would only pile up; and with Redis down
    the subscription retries for ~20 s and then raises RuntimeError ("the Celery
    application must be restarted") instead of a connection error we can map to 503.
    Reads (`AsyncResult.state`) are plain GETs and unaffected.
    """

    def on_task_call(self, producer, task_id):
        return {}


def redis_connections(settings: Settings) -> int:
    """Connections each Redis client of the gateway may open: one per handler thread,
    one more per waiting search (it holds a subscription to its results while it
    reads them), and a few for the event loop's own calls and the recovery sweep."""
    return settings.gateway_threads + settings.search_max_concurrent + 8


def create_producer(settings: Settings) -> Celery:
    app = create_celery_app("gateway", settings)
    connections = redis_connections(settings)
    backend_path = f"{PollingRedisBackend.__module__}:{PollingRedisBackend.__name__}"
    app.conf.update(
        # Celery's `module:Class+url` form: our backend class, the shared Redis URL.
        result_backend=f"{backend_path}+{settings.redis_url}",
        broker_transport_options={
            **broker_transport_options(settings),
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_timeout": SOCKET_TIMEOUT_SECONDS,
            # kombu's Redis channel caps its pool at 10 connections by default.
            "max_connections": connections,
        },
        redis_max_connections=connections,
        redis_socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        redis_socket_timeout=SOCKET_TIMEOUT_SECONDS,
        # A publish retries three times within ~1 s, then the request gets a 503.
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0,
                                   "interval_step": 0.2, "interval_max": 0.5},
    )
    return app
