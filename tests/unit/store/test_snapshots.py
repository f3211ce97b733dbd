import threading
import zipfile
from pathlib import Path

import pytest

from aiflow.errors import AIFlowError, WorkflowFileError
from aiflow.store.snapshots import pack, unpack


def make_project(root: Path) -> tuple[Path, Path]:
    (root / "dataset").mkdir(parents=True)
    (root / "dataset" / "a.npz").write_bytes(b"a" * 100)
    (root / "dataset" / "__pycache__").mkdir()
    (root / "dataset" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    flow = root / "flow.py"
    flow.write_text("print('hi')\n")
    return flow, root / "dataset"


def test_pack_lays_out_the_file_and_its_artifacts_under_the_file_stem(tmp_path: Path) -> None:
    flow, dataset = make_project(tmp_path / "p")
    out = tmp_path / "out"
    out.mkdir()
    packed = pack(flow, [dataset], out)
    assert packed.workflow_file == "flow/flow.py"
    assert zipfile.ZipFile(packed.path).namelist() == ["flow/dataset/a.npz", "flow/flow.py"]


def test_pack_is_deterministic(tmp_path: Path) -> None:
    flow, dataset = make_project(tmp_path / "p")
    (tmp_path / "o1").mkdir()
    (tmp_path / "o2").mkdir()
    first = pack(flow, [dataset], tmp_path / "o1")
    dataset.joinpath("a.npz").touch()  # a new mtime, same content
    assert pack(flow, [dataset], tmp_path / "o2").sha256 == first.sha256
    (dataset / "a.npz").write_bytes(b"changed")
    assert pack(flow, [dataset], tmp_path / "o2").sha256 != first.sha256


def test_pack_refuses_missing_and_clashing_artifacts(tmp_path: Path) -> None:
    flow, _ = make_project(tmp_path / "p")
    with pytest.raises(WorkflowFileError, match="no such file"):
        pack(flow, [tmp_path / "nope"], tmp_path)
    other = tmp_path / "q" / "flow.py"
    other.parent.mkdir()
    other.write_text("")
    with pytest.raises(WorkflowFileError, match="already in"):
        pack(flow, [other], tmp_path)


def test_unpack_verifies_the_hash_and_is_safe_when_concurrent(tmp_path: Path) -> None:
    flow, dataset = make_project(tmp_path / "p")
    packed = pack(flow, [dataset], tmp_path)
    with pytest.raises(AIFlowError, match="sha256"):
        unpack(packed.path, "0" * 64, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()

    target = tmp_path / "working" / "exec-1"
    errors: list[BaseException] = []

    def go() -> None:
        try:
            unpack(packed.path, packed.sha256, target)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert (target / "flow" / "flow.py").read_text() == "print('hi')\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["exec-1"]  # no staging folders left


def test_unpack_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    from aiflow.store.snapshots import sha256_of

    with pytest.raises(AIFlowError, match="outside"):
        unpack(evil, sha256_of(evil), tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_the_workflow_file_is_read_from_the_blob_without_unpacking_the_artifacts(tmp_path: Path) -> None:
    from aiflow.config import Config
    from aiflow.store.blobs import blob_store
    from aiflow.store.snapshots import read_workflow_file

    flow, dataset = make_project(tmp_path / "p")
    helpers = tmp_path / "p" / "helpers.py"
    helpers.write_text("X = 1\n")
    out = tmp_path / "out"
    out.mkdir()
    packed = pack(flow, [dataset, helpers], out)
    config = Config.load(home=tmp_path / "home", environ={})
    uri = blob_store(config).put(f"snapshots/{packed.sha256}.zip", packed.path)

    source, beside = read_workflow_file(config, uri, packed.sha256, packed.workflow_file)
    assert source == flow.read_bytes()
    assert beside == [("dataset", True), ("flow.py", False), ("helpers.py", False)]
    assert not list((tmp_path / "home").rglob("a.npz"))  # nothing unpacked
    with pytest.raises(AIFlowError, match="expected"):
        read_workflow_file(config, uri, "0" * 64, packed.workflow_file)
    with pytest.raises(AIFlowError, match="holds no"):
        read_workflow_file(config, uri, packed.sha256, "flow/other.py")
