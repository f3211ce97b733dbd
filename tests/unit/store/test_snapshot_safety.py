"""Only snapshots that are what they claim run: each rule a command could try to get around."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from aiflow.config import Config
from aiflow.errors import AIFlowError, DecodeError
from aiflow.protocol.messages import TaskCommand, WorkflowDefinition
from aiflow.store.blobs import LocalBlobStore
from aiflow.store.snapshots import fetch, file_in, pack, unpack

GOOD = "a" * 64


def decode(command: TaskCommand) -> TaskCommand:
    record = command.to_record()
    return TaskCommand.from_record(Message(topic="aiflow.tasks", partition=0, offset=1, key=record.key_bytes(),
                                           value=record.value, timestamp=(TIMESTAMP_LOG_APPEND_TIME, 0)))


@pytest.mark.parametrize("sha256", ["../x", "A" * 64, "a" * 63, "g" * 64, ""])
def test_a_command_whose_sha256_is_not_64_hex_digits_is_refused(sha256: str) -> None:
    with pytest.raises(DecodeError, match="not 64 hex digits"):
        decode(TaskCommand("ns", "wf", "e1", "t", 1, "file:///b.zip", sha256, "wf/wf.py"))


@pytest.mark.parametrize("workflow_file", ["/etc/passwd", "../../x.py", "wf/../../x.py", "C:/x.py", ""])
def test_a_command_whose_workflow_file_leaves_the_snapshot_is_refused(workflow_file: str) -> None:
    with pytest.raises(DecodeError, match="not a relative path inside the snapshot"):
        decode(TaskCommand("ns", "wf", "e1", "t", 1, "file:///b.zip", GOOD, workflow_file))
    with pytest.raises(ValueError):
        WorkflowDefinition.from_avro(WorkflowDefinition("ns", "wf", 1, "file:///b.zip", GOOD, workflow_file)
                                     .to_avro())


def test_a_blob_uri_outside_the_blob_folder_is_refused(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    (tmp_path / "secret").write_text("no")
    with pytest.raises(AIFlowError, match="outside the blob folder"):
        store.get((tmp_path / "secret").as_uri(), tmp_path / "copy")
    with pytest.raises(AIFlowError, match="outside the blob folder"):
        store.get(f"file://{tmp_path}/blobs/../secret", tmp_path / "copy")


def test_fetch_refuses_a_sha256_that_is_not_hex(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={})
    with pytest.raises(AIFlowError, match="not 64 hex digits"):
        fetch(config, "file:///x.zip", "../../etc", tmp_path / "dest")


def test_a_workflow_file_path_that_leaves_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wf").mkdir()
    assert file_in(tmp_path, "wf/flow.py") == (tmp_path / "wf" / "flow.py").resolve()
    (tmp_path / "wf" / "out").symlink_to("/etc")
    with pytest.raises(AIFlowError, match="leaves the snapshot folder"):
        file_in(tmp_path, "wf/out/passwd")


def test_an_archive_that_inflates_past_the_cap_is_refused(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text("x = 1\n" + "#" * 100_000)
    packed = pack(flow, [], tmp_path)
    with pytest.raises(AIFlowError, match="would unpack to"):
        unpack(packed.path, packed.sha256, tmp_path / "out", max_bytes=10_000)
    assert not (tmp_path / "out").exists()
    assert (unpack(packed.path, packed.sha256, tmp_path / "ok") / "flow" / "flow.py").exists()
    with zipfile.ZipFile(packed.path) as zf:
        assert sum(i.file_size for i in zf.infolist()) > 10_000
