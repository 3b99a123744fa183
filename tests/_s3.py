"""A moto S3 server on 127.0.0.1 for the tests that need object storage (started and stopped here)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_bucket(scratch: Path, bucket: str) -> Iterator[str]:
    """``s3://<bucket>`` on a moto server bound to loopback; the AWS env points botocore at it.

    Args:
        scratch: an empty folder for the (empty) AWS config files.
        bucket: bucket name to create.
    """
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server]")
    pytest.importorskip("s3fs", reason="needs s3fs")
    from drasclr import uri

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    env = pytest.MonkeyPatch()
    empty = scratch / "none"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
    }.items():
        env.setenv(key, value)
    env.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    env.delenv("AWS_PROFILE", raising=False)
    server.start()
    try:
        fs, _ = uri.filesystem(f"s3://{bucket}")
        fs.mkdir(bucket)
        yield f"s3://{bucket}"
    finally:
        server.stop()
        env.undo()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "moto server still listening"
