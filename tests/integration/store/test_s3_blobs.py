"""The s3:// blob store against a real S3-compatible server (moto's standalone server, tests/s3server.py):
content-addressed uploads, atomic downloads, refusal of any object outside the bucket and prefix, and a
workflow uploaded to S3 and fetched — sha256 checked — by a worker that shares no disk with the uploader."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from aiflow import ops
from aiflow.config import Config
from aiflow.errors import AIFlowError, ConfigError, NotFound
from aiflow.kafka import topics
from aiflow.store import blobs, s3
from aiflow.store.blobs import blob_store, known_schemes, register_blob_store
from aiflow.store.s3 import S3BlobStore
from aiflow.store.snapshots import fetch, sha256_of
from tests.conftest import make_config
from tests.s3server import S3Server, s3_environ


@pytest.fixture
def prefix() -> str:
    return f"snapshots-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store_config(s3_server: S3Server, prefix: str, tmp_path: Path) -> Config:
    return Config.load(home=tmp_path / "home", environ=s3_environ(s3_server, prefix))


def blob_file(folder: Path, data: bytes = b"PK\x05\x06" + bytes(18)) -> Path:
    path = folder / "blob.zip"
    path.write_bytes(data)
    return path


def test_put_get_delete_round_trip(s3_server: S3Server, store_config: Config, prefix: str, tmp_path: Path) -> None:
    store = blob_store(store_config)
    assert isinstance(store, S3BlobStore)
    source = blob_file(tmp_path, b"snapshot bytes" * 1000)
    uri = store.put("default/flow/abc.zip", source)
    assert uri == f"s3://{s3_server.bucket}/{prefix}/default/flow/abc.zip"
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=f"{prefix}/default/flow/abc.zip")["Body"]
    assert body.read() == source.read_bytes()

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    store.get(uri, downloads / "copy.zip")
    assert (downloads / "copy.zip").read_bytes() == source.read_bytes()
    assert [p.name for p in downloads.iterdir()] == ["copy.zip"]  # no partial file left beside it

    store.delete(uri)
    with pytest.raises(NotFound, match="is missing"):
        store.get(uri, downloads / "again.zip")
    store.delete(uri)  # a missing blob is no error
    assert [p.name for p in downloads.iterdir()] == ["copy.zip"]


def test_a_missing_object_is_not_found(store_config: Config, s3_server: S3Server, prefix: str,
                                       tmp_path: Path) -> None:
    uri = f"s3://{s3_server.bucket}/{prefix}/default/flow/{'0' * 64}.zip"
    with pytest.raises(NotFound, match=f"snapshot blob {uri} is missing"):
        blob_store(store_config).get(uri, tmp_path / "out.zip")
    assert list(tmp_path.glob(".partial-*")) == [] and not (tmp_path / "out.zip").exists()


@pytest.mark.parametrize("outside", [
    "s3://other-bucket/{prefix}/default/flow/a.zip",     # another bucket
    "s3://{bucket}/{prefix}-sibling/default/flow/a.zip",  # a prefix that merely starts like ours
    "s3://{bucket}/elsewhere/a.zip",                       # the bucket's other objects
    "s3://{bucket}/{prefix}/../elsewhere/a.zip",           # a dot segment out of the prefix
    "s3://{bucket}/{prefix}/default//a.zip",
    "s3://{bucket}/{prefix}",                              # the prefix itself
    "s3://{bucket}/{prefix}/a.zip?versionId=1",
    "s3://user:secret@{bucket}/{prefix}/a.zip",
    "file:///etc/passwd",
    "https://{bucket}.s3.amazonaws.com/{prefix}/a.zip",
])
def test_a_uri_outside_the_bucket_and_prefix_is_refused_not_read(
        outside: str, s3_server: S3Server, store_config: Config, prefix: str, tmp_path: Path) -> None:
    client = s3_server.client()
    uri = outside.format(bucket=s3_server.bucket, prefix=prefix)
    key = f"{prefix}-sibling/default/flow/a.zip"
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"not yours")
    store = blob_store(store_config)
    with pytest.raises(AIFlowError, match="outside the blob store") as refused:
        store.get(uri, tmp_path / "out.zip")
    assert not isinstance(refused.value, NotFound) and "secret" not in str(refused.value)
    assert not (tmp_path / "out.zip").exists()
    with pytest.raises(AIFlowError, match="outside the blob store"):
        store.delete(uri)
    assert client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == b"not yours"


def test_a_key_leaving_the_prefix_is_not_uploaded(store_config: Config, tmp_path: Path) -> None:
    with pytest.raises(AIFlowError, match="leaves the blob prefix"):
        blob_store(store_config).put("../elsewhere/a.zip", blob_file(tmp_path))


def test_a_workflow_uploaded_to_s3_is_fetched_and_checked_on_a_host_without_shared_disk(
        kafka_bootstrap: str, s3_server: S3Server, prefix: str, tmp_path: Path) -> None:
    uploader = make_config(tmp_path / "uploader", kafka_bootstrap, **s3_environ(s3_server, prefix))
    topics.create_topics(uploader)
    flow = tmp_path / "flow.py"
    flow.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator('a')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("a,b\n1,2\n")
    ops.upload_workflows(flow, [tmp_path / "data"], config=uploader)
    [snap] = ops.list_workflow_snapshots("w", config=uploader)
    key = f"{prefix}/default/flow/{snap.sha256}.zip"
    assert snap.uri == f"s3://{s3_server.bucket}/{key}"
    assert not (tmp_path / "uploader" / "blobs").exists()  # nothing on the uploader's disk

    # A worker elsewhere: a home of its own, the same blob settings, the snapshot's URI and sha256 from
    # its START command.
    worker = Config.load(home=tmp_path / "worker", environ=s3_environ(s3_server, prefix))
    folder = fetch(worker, snap.uri, snap.sha256, tmp_path / "worker" / "working_dir" / "w" / "1")
    assert (folder / "flow" / "flow.py").read_text() == flow.read_text()
    assert (folder / "flow" / "data" / "rows.csv").read_text() == "a,b\n1,2\n"

    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"PK tampered with")
    destination = tmp_path / "worker" / "working_dir" / "w" / "2"
    with pytest.raises(AIFlowError, match=f"has sha256 .*, expected {snap.sha256}: refusing it"):
        fetch(worker, snap.uri, snap.sha256, destination)
    assert not destination.exists()
    assert [p.name for p in destination.parent.iterdir()] == ["1"]  # the bad download is not kept


def test_the_uploaded_blob_is_the_packed_snapshot(kafka_bootstrap: str, s3_server: S3Server, prefix: str,
                                                 tmp_path: Path) -> None:
    config = make_config(tmp_path / "home", kafka_bootstrap, **s3_environ(s3_server, prefix))
    topics.create_topics(config)
    flow = tmp_path / "flow.py"
    flow.write_text("from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n    Operator('a')\n")
    ops.upload_workflows(flow, config=config)
    [snap] = ops.list_workflow_snapshots("w", config=config)
    downloaded = tmp_path / "blob.zip"
    blob_store(config).get(snap.uri, downloaded)
    assert sha256_of(downloaded) == snap.sha256


# -- settings, without the server ---------------------------------------------------------------


def test_an_unknown_scheme_names_the_known_ones(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_BLOB_URI": "gs://u:hunter2@bucket/x"})
    with pytest.raises(ConfigError, match=r"no blob store for scheme 'gs'.*known schemes: file://, s3://") as error:
        blob_store(config)
    assert "hunter2" not in str(error.value)


def test_a_registered_scheme_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "_FACTORIES", dict(blobs._FACTORIES))  # registered for this test only
    made = []

    def factory(config: Config, parsed: object) -> S3BlobStore:
        made.append(parsed)
        return S3BlobStore("bucket", "x")

    register_blob_store("memtest", factory)
    assert "memtest" in known_schemes()
    blob_store(Config.load(home=tmp_path, environ={"AIFLOW_BLOB_URI": "memtest://somewhere"}))
    assert len(made) == 1


@pytest.mark.parametrize("environ", [
    {"AIFLOW_BLOB_URI": "s3://AKIA:wJalr/K7MDENG/bPxRfiCY@bucket/prefix"},
    {"AIFLOW_BLOB_URI": "s3://bucket/prefix",
     "AIFLOW_BLOB_S3_ENDPOINT_URL": "https://AKIA:wJalr/K7MDENG/bPxRfiCY@minio:9000"},
])
def test_credentials_in_a_uri_are_refused_and_not_shown(environ: dict[str, str], tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ=environ)
    with pytest.raises(ConfigError, match="credentials") as error:
        blob_store(config)
    assert "K7MDENG" not in str(error.value)

    from click.testing import CliRunner

    from aiflow.cli.main import cli

    result = CliRunner().invoke(cli, ["config", "list", "-o", "plain"], env={"AIFLOW_HOME": str(tmp_path), **environ})
    assert result.exit_code == 0, result.output
    assert "AKIA:***@" in result.output and "K7MDENG" not in result.output


def test_an_s3_store_without_boto3_asks_for_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now fails as if it were not installed
    monkeypatch.setattr(s3, "_clients", {})
    config = Config.load(home=tmp_path, environ={"AIFLOW_BLOB_URI": "s3://bucket/prefix"})
    store = blob_store(config)  # making the store needs no boto3 and calls nobody
    with pytest.raises(ConfigError, match=r"install aiflow-kafka\[s3\]"):
        store.delete("s3://bucket/prefix/a.zip")
