"""Fixtures of the store's integration tests: a real S3-compatible server (tests/s3server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's standalone S3 server, one per test session, with the bucket `aiflow-test`; each test
    keeps to a prefix of its own."""
    with running_s3_server() as server:
        yield server
