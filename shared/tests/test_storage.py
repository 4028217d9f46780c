"""Both storage backends. S3 runs over HTTP against moto's server mode, an S3
emulator started by the test (no real S3 can be reached from here)."""

import boto3
import pytest
from moto.server import ThreadedMotoServer

from docflow.devstack.processes import free_port
from docflow.shared.errors import PermanentError, TransientError
from docflow.shared.storage import LocalStorage, S3Storage


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_storage(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="docs")
    return S3Storage("docs", prefix="p/", endpoint_url=s3_endpoint)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path)
    return request.getfixturevalue("s3_storage")


def test_put_get_and_delete_prefix(storage):
    storage.ping()
    storage.put("tenants/a/documents/d1/original", b"hello")
    storage.put("tenants/a/documents/d1/v1/chunks.json", b"[]")
    storage.put("tenants/a/documents/d2/original", b"other")
    assert storage.get("tenants/a/documents/d1/original") == b"hello"
    assert storage.delete_prefix("tenants/a/documents/d1/") == 2
    with pytest.raises(PermanentError):
        storage.get("tenants/a/documents/d1/original")
    assert storage.get("tenants/a/documents/d2/original") == b"other"


@pytest.mark.parametrize("key", ["../outside", "tenants/a/../../../outside", "/tmp/outside"])
def test_local_keys_cannot_escape_the_root(tmp_path, key):
    with pytest.raises(ValueError):
        LocalStorage(tmp_path / "root").put(key, b"x")
    assert not (tmp_path / "outside").exists()


def test_a_key_may_climb_within_the_root(tmp_path):
    storage = LocalStorage(tmp_path / "root")
    storage.put("tenants/a/../b/original", b"x")
    assert (tmp_path / "root" / "tenants" / "b" / "original").read_bytes() == b"x"


def test_unreachable_s3_is_transient(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    storage = S3Storage("docs", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError):
        storage.get("anything")
