"""Object storage for originals and artifacts: a folder locally, S3 in production.

Both backends raise `TransientError(STORAGE_UNAVAILABLE)` when the store cannot be
reached (so the task retries) and `PermanentError(ARTIFACT_MISSING)` for a key that
does not exist (retrying cannot conjure it).
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from docflow.shared.errors import ErrorCode, PermanentError, TransientError
from docflow.shared.settings import Settings


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def ping(self) -> None: ...


def _missing(key: str) -> PermanentError:
    return PermanentError(ErrorCode.ARTIFACT_MISSING, f"no object at storage key {key!r}")


class LocalStorage:
    """Files under one root folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        # A lexical check (normpath folds `..`), like resolve() without its lstat of
        # every folder on the path per call; keys are made by docflow (tenant, id,
        # version), and no one but docflow writes links under the root.
        path = Path(os.path.normpath(self.root / key))
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        except OSError as exc:
            raise TransientError(ErrorCode.STORAGE_UNAVAILABLE, f"cannot write {key!r}: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise _missing(key) from None
        except OSError as exc:
            raise TransientError(ErrorCode.STORAGE_UNAVAILABLE, f"cannot read {key!r}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if path.is_dir():
            count = sum(1 for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path, ignore_errors=True)
            return count
        if path.is_file():
            path.unlink(missing_ok=True)
            return 1
        return 0

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise OSError(f"{self.root} is not writable")
        except OSError as exc:
            raise TransientError(ErrorCode.STORAGE_UNAVAILABLE, str(exc)) from exc


class S3Storage:
    """An S3 bucket (or any S3-compatible store via `DOCFLOW_S3_ENDPOINT_URL`)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 region: str = "us-east-1") -> None:
        import boto3  # imported here: only deployments using S3 pay for it
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            # Our own task retries own the backoff; keep boto's short so a dead
            # endpoint surfaces within seconds rather than minutes.
            config=Config(retries={"max_attempts": 2, "mode": "standard"},
                          connect_timeout=5, read_timeout=30),
        )
        from botocore.exceptions import BotoCoreError, ClientError

        self._boto_errors = (BotoCoreError, ClientError)

    def _call(self, what: str, key: str, fn, **kwargs):
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except self._boto_errors as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                raise _missing(key) from None
            raise TransientError(ErrorCode.STORAGE_UNAVAILABLE, f"S3 {what} {key!r}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        self._call("put", key, self.client.put_object, Key=self.prefix + key, Body=data)

    def get(self, key: str) -> bytes:
        response = self._call("get", key, self.client.get_object, Key=self.prefix + key)
        return response["Body"].read()

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if objects:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})
                    deleted += len(objects)
        except self._boto_errors as exc:
            raise TransientError(ErrorCode.STORAGE_UNAVAILABLE, f"S3 delete {prefix!r}: {exc}") from exc
        return deleted

    def ping(self) -> None:
        self._call("head bucket", "", self.client.head_bucket)


def open_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url,
                         settings.s3_region)
    return LocalStorage(settings.storage_path)
