"""kombu's Redis transport, keeping one redis-py client per channel.

kombu's Redis channel builds a new `redis.Redis` object, over the channel's one
connection pool, for every publish, ack and queue-length call. With redis-py 8 that
object costs more CPU than the command it sends (its constructor fills a table of
~170 response callbacks): about a third of a publish, on every upload in the gateway
and every ack and chain step in the workers. The client holds no state of its own
beyond the pool (each command borrows a pool connection), so one per channel sends
exactly the same commands; a channel is used by one thread at a time (the producer
pool hands each one out alone), like the clients kombu makes.

Everything else is kombu's own; the Celery app selects this transport for redis://
and rediss:// URLs (docflow.shared.celery_app).
"""

from kombu.transport import redis as kombu_redis

SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    _reused_client = None

    def _create_client(self, asynchronous=False):
        # The asynchronous client is the consumer's BRPOP connection: kombu keeps
        # that one itself (`channel.client`), so only the synchronous one is reused.
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._reused_client
        # A reconnect replaces the channel's pool; the client must follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._reused_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:{Transport.__name__}"
