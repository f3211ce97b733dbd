"""Namespaces, workflows and snapshots through `aiflow.ops`, on SQLite and PostgreSQL, with the real broker."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from sqlalchemy import text

from aiflow import ops
from aiflow.config import Config
from aiflow.errors import Conflict, NotFound, StoreError, WorkflowFileError
from aiflow.kafka import clients, topics
from aiflow.protocol.messages import WorkflowDefinition, WorkflowDeleted, read_workflow_record
from aiflow.store.db import Store
from tests.conftest import REPO, make_config

TUTORIAL = REPO / "samples" / "online_machine_learning" / "online_ml_workflow.py"


@pytest.fixture
def config(kafka_bootstrap: str, db_uri: str, tmp_path: Path) -> Config:
    config = make_config(tmp_path / "home", kafka_bootstrap, AIFLOW_DB_URI=db_uri)
    topics.create_topics(config)
    return config


@pytest.fixture
def tutorial(tmp_path: Path) -> Path:
    folder = tmp_path / "tutorial"
    (folder / "dataset").mkdir(parents=True)
    shutil.copy(TUTORIAL, folder)
    (folder / "dataset" / "mnist_train.npz").write_bytes(b"placeholder")
    return folder


def definitions(config: Config) -> dict[str, WorkflowDefinition | None]:
    """The workflows topic as the router will read it: the latest value per key."""
    consumer = clients.consumer(config, role="test", settings={"enable.partition.eof": True})
    consumer.assign([TopicPartition(topics.name(config, topics.WORKFLOWS), 0, 0)])
    latest: dict[str, WorkflowDefinition | None] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            break
        found = read_workflow_record(msg)
        latest[msg.key().decode()] = None if isinstance(found, WorkflowDeleted) else found
    consumer.close()
    return latest


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_tutorial_upload_stores_snapshot_and_publishes_its_event_keys(config: Config, tutorial: Path) -> None:
    [info] = ops.upload_workflows(tutorial / "online_ml_workflow.py", [tutorial / "dataset"], config=config)
    assert (info.namespace, info.name, info.version, info.is_enabled) == ("default", "online_machine_learning", 1, True)

    shown = ops.get_workflow("online_machine_learning", config=config)
    assert shown is not None
    data = shown.to_dict(with_definition=True)
    assert [t["name"] for t in data["tasks"]] == ["pre_processing", "training", "validating", "deploying",
                                                  "predicting"]
    assert data["rules"]["validating"][0]["condition"]["conditions"][0]["task"] == "training"
    assert data["rules"]["training"][0]["condition"]["event_keys"] == ["data_prepared"]

    [snap] = ops.list_workflow_snapshots("online_machine_learning", config=config)
    assert snap.version == 1 and snap.workflow_file == "online_ml_workflow/online_ml_workflow.py"
    assert Path(snap.uri.removeprefix("file://")).is_file()

    published = definitions(config)["default/online_machine_learning"]
    assert published is not None and published.version == 1 and published.enabled
    assert published.snapshot_sha256 == snap.sha256
    assert sorted(published.rule_keys) == [("default", "data_prepared"), ("default", "model_validated")]


def test_a_broken_file_is_refused_with_its_line_and_nothing_is_stored(config: Config, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.py", "from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n"
                                    "    Operator('a')\n    Operator('a')\n")
    with pytest.raises(WorkflowFileError, match=r"bad\.py:4: workflow 'w' already has a task named 'a'"):
        ops.upload_workflows(bad, config=config)
    crash = write(tmp_path, "crash.py", "import os\n\n1 / 0\n")
    with pytest.raises(WorkflowFileError, match=r"crash\.py:3: ZeroDivisionError"):
        ops.upload_workflows(crash, config=config)
    assert ops.list_workflows(config=config) == []
    assert not (config.home / "blobs").exists()
    assert definitions(config) == {}


def test_same_content_keeps_its_version_and_a_change_makes_a_new_one(config: Config, tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.py", "from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n"
                                      "    Operator('a')\n")
    assert ops.upload_workflows(flow, config=config)[0].version == 1
    assert ops.upload_workflows(flow, config=config)[0].version == 1
    flow.write_text(flow.read_text() + "    Operator('b')\n")
    assert ops.upload_workflows(flow, config=config)[0].version == 2
    assert [s.version for s in ops.list_workflow_snapshots("w", config=config)] == [2, 1]
    assert definitions(config)["default/w"].version == 2  # type: ignore[union-attr]


def test_several_workflows_in_one_file_and_the_upload_namespace(config: Config, tmp_path: Path) -> None:
    ops.add_namespace("team", {"owner": "ml"}, config=config)
    flow = write(tmp_path, "two.py", "from aiflow import Workflow, Operator\n"
                                     "with Workflow(name='one'):\n    Operator('a')\n"
                                     "with Workflow(name='two', namespace='default'):\n    Operator('b')\n")
    infos = ops.upload_workflows(flow, namespace="team", config=config)
    assert [(i.namespace, i.name) for i in infos] == [("team", "one"), ("default", "two")]
    assert [w.name for w in ops.list_workflows("team", config=config)] == ["one"]


def test_upload_to_a_missing_namespace_is_refused(config: Config, tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.py", "from aiflow import Workflow, Operator\n"
                                      "with Workflow(name='w', namespace='nowhere'):\n    Operator('a')\n")
    with pytest.raises(NotFound, match="aiflow namespace add nowhere"):
        ops.upload_workflows(flow, config=config)


def test_namespaces(config: Config, tmp_path: Path) -> None:
    assert [n.name for n in ops.list_namespaces(config=config)] == ["default"]
    ops.add_namespace("team", config=config)
    with pytest.raises(Conflict, match="already exists"):
        ops.add_namespace("team", config=config)
    assert ops.update_namespace("team", {"k": "v"}, config=config).properties == {"k": "v"}
    flow = write(tmp_path, "flow.py", "from aiflow import Workflow, Operator\n"
                                      "with Workflow(name='w', namespace='team'):\n    Operator('a')\n")
    ops.upload_workflows(flow, config=config)
    with pytest.raises(Conflict, match="still has 1 workflow"):
        ops.delete_namespace("team", config=config)
    ops.delete_workflow("w", "team", config=config)
    ops.delete_namespace("team", config=config)
    assert ops.get_namespace("team", config=config) is None
    with pytest.raises(Conflict, match="default"):
        ops.delete_namespace("default", config=config)
    with pytest.raises(NotFound):
        ops.delete_namespace("team", config=config)


def test_disable_and_enable_publish_the_flag_and_upload_keeps_it(config: Config, tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.py", "from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n"
                                      "    Operator('a')\n")
    ops.upload_workflows(flow, config=config)
    assert not ops.disable_workflow("w", config=config).is_enabled
    assert definitions(config)["default/w"].enabled is False  # type: ignore[union-attr]
    flow.write_text(flow.read_text() + "    Operator('b')\n")
    assert ops.upload_workflows(flow, config=config)[0].is_enabled is False
    assert ops.enable_workflow("w", config=config).is_enabled
    assert definitions(config)["default/w"].enabled is True  # type: ignore[union-attr]


def test_delete_removes_rows_blob_and_definition(config: Config, tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.py", "from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n"
                                      "    Operator('a')\n")
    ops.upload_workflows(flow, config=config)
    [snap] = ops.list_workflow_snapshots("w", config=config)
    ops.delete_workflow("w", config=config)
    assert ops.get_workflow("w", config=config) is None
    assert not Path(snap.uri.removeprefix("file://")).exists()
    assert definitions(config)["default/w"] is None  # the tombstone
    with pytest.raises(NotFound, match="does not exist"):
        ops.delete_workflow("w", config=config)


def test_snapshot_delete_keeps_the_latest(config: Config, tmp_path: Path) -> None:
    flow = write(tmp_path, "flow.py", "from aiflow import Workflow, Operator\nwith Workflow(name='w'):\n"
                                      "    Operator('a')\n")
    ops.upload_workflows(flow, config=config)
    flow.write_text(flow.read_text() + "    Operator('b')\n")
    ops.upload_workflows(flow, config=config)
    with pytest.raises(Conflict, match="latest"):
        ops.delete_workflow_snapshot("w", 2, config=config)
    first = ops.get_workflow_snapshot("w", 1, config=config)
    ops.delete_workflow_snapshot("w", 1, config=config)
    assert [s.version for s in ops.list_workflow_snapshots("w", config=config)] == [2]
    assert not Path(first.uri.removeprefix("file://")).exists()
    with pytest.raises(NotFound):
        ops.get_workflow_snapshot("w", 1, config=config)


def test_migrations_upgrade_downgrade_reset(db_uri: str, tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_DB_URI": db_uri})
    store = Store(config)
    assert store.current_revision() is None
    store.upgrade("0001")
    assert store.current_revision() == "0001"
    with store.engine.begin() as connection:  # a row written at 0001 (ops refuse a database at another revision)
        connection.execute(text("INSERT INTO namespace (name, properties, create_time) "
                                "VALUES ('kept', '{}', CURRENT_TIMESTAMP)"))
    store.upgrade()  # 0001 -> 0002 keeps the rows
    assert store.current_revision() == "0002"
    assert [n.name for n in ops.list_namespaces(config=config)] == ["default", "kept"]
    ops.delete_namespace("kept", config=config)
    ops.add_namespace("extra", config=config)
    store.reset()
    assert [n.name for n in ops.list_namespaces(config=config)] == ["default"]
    store.downgrade("base")
    assert store.current_revision() is None
    fresh = Store(config)  # an empty database is created on first use
    fresh.ensure_schema()
    assert fresh.current_revision() == "0002"


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_DB_URI": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    with pytest.raises(StoreError, match="cannot reach the database"):
        ops.list_namespaces(config=config)
