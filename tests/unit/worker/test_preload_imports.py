"""Which modules a warm fork server imports ahead for a workflow file (aiflow/worker/zygote.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiflow.worker.zygote import _Preloads, imported_names, local_modules, module_names


def test_imports_anywhere_in_the_file_are_found_and_relative_ones_are_not() -> None:
    source = b"""
import numpy as np, os.path
from sklearn.linear_model import LogisticRegression, Ridge
from . import sibling
from .pkg import thing
from json import *

def task():
    import pandas
"""
    assert imported_names(source) == ["numpy", "os.path", "sklearn.linear_model",
                                      "sklearn.linear_model.LogisticRegression?", "sklearn.linear_model.Ridge?",
                                      "json", "pandas"]


def test_a_file_that_does_not_parse_has_no_imports() -> None:
    assert imported_names(b"import numpy\ndef (:") == []


def test_modules_beside_the_file_are_local(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "package").mkdir()
    (tmp_path / "fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / "data.csv").write_text("")
    assert local_modules(tmp_path) == {"helpers", "package", "fast"}


def test_only_findable_unshadowed_modules_not_yet_imported_are_preloaded(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    for name in ("preload_alpha", "preload_beta", "preload_gamma"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "preload_gamma.py").write_text("")  # the folder's own, beside the file: shadows the installed one
    flow = folder / "flow.py"
    flow.write_text("import sys\nimport preload_gamma\nimport no_such_module_anywhere\nimport preload_alpha.sub\n"
                    "from __future__ import annotations\nfrom preload_beta import thing\n")
    preloads = _Preloads()
    # sys: imported already (in every fork); preload_gamma: the folder's own; the missing one: nowhere to
    # import from; `thing` may be a submodule of preload_beta.
    assert preloads.of(str(flow)) == ("preload_alpha.sub", "preload_beta", "preload_beta.thing?")
    assert preloads.of(str(folder / "gone.py")) == ()


def test_a_folders_module_names_come_from_its_entries() -> None:
    assert module_names([("helpers.py", False), ("package", True), ("fast.cpython-311-x86_64-linux-gnu.so", False),
                         ("data.csv", False), ("README", False)]) == {"helpers", "package", "fast"}
