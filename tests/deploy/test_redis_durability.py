"""The chart's durable mode: `redis.appendfsync: always` reaches the bundled redis-server,
and the schema refuses a policy Redis does not have (docs/reliability.md, Durable acceptance)."""

import pytest

from .deploy_support import named


def _appendfsync(objects: list[dict]) -> str:
    args = named(objects, "StatefulSet", "docflow-redis")["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--appendfsync") + 1]


def test_the_default_is_everysec(default_manifests):
    assert _appendfsync(default_manifests) == "everysec"


def test_the_durable_mode_fsyncs_every_write(chart):
    assert _appendfsync(chart.manifests({"redis": {"appendfsync": "always"}})) == "always"


def test_a_policy_redis_does_not_have_is_refused(chart):
    with pytest.raises(Exception, match="appendfsync"):
        chart.manifests({"redis": {"appendfsync": "sometimes"}})
