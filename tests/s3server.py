"""A real S3-compatible server for tests: moto's standalone server (`python -m moto.server`) as a
process of its own on a free loopback port, spoken to over HTTP by boto3 exactly as aiflow speaks to
AWS or MinIO — never a mock of the client.

`running_s3_server()` starts it with one bucket and points the AWS chain of this process at fake
credentials (moto accepts any), away from the user's own `~/.aws`. When moto or boto3 is missing the
tests that need it are skipped locally, and fail in CI (`CI=true`), where they must run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, free_port

# What the AWS chain of the test process reads, so a developer's profile or role is never used.
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
           "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
           "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    region: str
    pid: int

    def client(self) -> Any:
        """A boto3 client of the server, to look at or change objects behind aiflow's back."""
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=self.region)


def _require_moto() -> None:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        message = f"the S3 tests need boto3 and moto[server] (the dev extra): {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer: it is up
    except OSError:
        return False


def _start(log: Path, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server on a free loopback port; one more try on new port if it dies (a port race)."""
    for attempt in (1, 2):
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                       stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(endpoint + "/moto-api/"):
                return process, endpoint
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            process.wait()
            pytest.fail(f"moto's S3 server did not answer on {endpoint} within {timeout:.0f} s; its log: {log}")
        if attempt == 2:
            pytest.fail(f"moto's S3 server exited with {process.returncode}; its log:\n{log.read_text()[-2000:]}")
    raise AssertionError("unreachable")


@contextmanager
def running_s3_server(bucket: str = "aiflow-test", region: str = "us-east-1") -> Iterator[S3Server]:
    """moto's S3 server with `bucket` created, the AWS variables of this process set to reach it as
    any S3 is reached (fake keys, no profile, no instance metadata), and everything undone afterwards."""
    _require_moto()
    with tempfile.TemporaryDirectory(prefix="aiflow-s3-") as tmp, pytest.MonkeyPatch.context() as env:
        for name in AWS_ENV:
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_CONFIG_FILE", str(Path(tmp) / "no-config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(Path(tmp) / "no-credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        process, endpoint = _start(Path(tmp) / "moto.log")
        try:
            server = S3Server(endpoint, bucket, region, process.pid)
            server.client().create_bucket(Bucket=bucket)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def s3_environ(server: S3Server, prefix: str) -> dict[str, str]:
    """The aiflow settings of a blob store under `prefix` of the server's bucket."""
    return {"AIFLOW_BLOB_URI": f"s3://{server.bucket}/{prefix}", "AIFLOW_BLOB_S3_ENDPOINT_URL": server.endpoint_url,
            "AIFLOW_BLOB_S3_REGION": server.region}

