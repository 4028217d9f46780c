"""Fixtures for every test in the repo: a real redis-server per test session."""

from pathlib import Path

import pytest
import redis

from docflow.devstack.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    with RedisServer(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> redis.Redis:
    """A client on a flushed database: every test starts from an empty Redis."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    return client


# tests/podman builds the images and runs the chart's pods (minutes, podman as root):
# only `make test-deploy`, which names the folder, runs it; `make test` leaves it out.
PODMAN_TESTS = Path(__file__).resolve().parent / "tests" / "podman"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path != PODMAN_TESTS:
        return None
    asked = any(Path(arg.split("::")[0]).resolve().is_relative_to(PODMAN_TESTS) for arg in config.args)
    return None if asked else True
