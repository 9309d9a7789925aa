"""A real S3 server for tests: moto's ThreadedMotoServer on a free loopback port, the endpoint
and dummy credentials set the way a user sets them (AWS_ENDPOINT_URL and AWS_* variables; no
eercf flag), and a fresh bucket per test. Import the fixtures into a test module with
`from tests.s3_fixtures import s3_fixture, s3_server  # noqa: F401` (the fixture is named `s3`)."""
from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3:
    """One test's S3: the server's endpoint URL and a bucket that exists."""

    endpoint: str
    bucket: str

    def url(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            region_name=CREDENTIALS["AWS_DEFAULT_REGION"])

    def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket under `prefix`, read by a client of its own (no cache)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def buckets(self) -> list[str]:
        return sorted(b["Name"] for b in self.client().list_buckets()["Buckets"])


def start_server():
    """A started ThreadedMotoServer on a free 127.0.0.1 port and its endpoint URL."""
    server_module = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    port = free_port()
    # The server's per-request lines would go to whatever stderr a test captured last.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """The endpoint URL of an S3 server that runs for the test module."""
    server, endpoint = start_server()
    yield endpoint
    server.stop()


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point this process (and the workers it starts) at `endpoint` with dummy credentials,
    and drop cached s3fs instances that were made for another endpoint."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "EERCF_STORAGE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(name="s3")
def s3_fixture(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[S3]:
    """A fresh bucket on the module's server, the environment pointed at it, and a local
    cache dir of its own (EERCF_CACHE_DIR)."""
    from eercf_core.files import paths

    use_endpoint(monkeypatch, s3_server)
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "eercf-cache"))
    monkeypatch.setattr(paths, "_options", None)
    store = S3(s3_server, f"eercf-{uuid.uuid4().hex[:12]}")
    store.client().create_bucket(Bucket=store.bucket)
    yield store
    os.environ.pop(paths.STORAGE_OPTIONS_ENV, None)  # paths.configure exports it
    paths._options = None
