"""The quick schema check: a database at the newest revision is recognised without Alembic, and
HEAD_REVISION is Alembic's head."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiflow.config import Config
from aiflow.errors import StoreError
from aiflow.store.db import HEAD_REVISION, Store, head_revision


def test_head_revision_is_the_newest_migration() -> None:
    assert HEAD_REVISION == head_revision()


def _store(tmp_path: Path) -> Store:
    return Store(Config.load(home=tmp_path, environ={"AIFLOW_DB_URI": f"sqlite:///{tmp_path}/aiflow.db"}))


def test_a_database_at_head_is_used_without_importing_alembic(tmp_path: Path) -> None:
    _store(tmp_path).ensure_schema()  # creates it (Alembic runs here)
    code = ("import sys\nfrom pathlib import Path\n"
            "from aiflow.config import Config\nfrom aiflow.store.db import Store\n"
            f"home = Path({str(tmp_path)!r})\n"
            "store = Store(Config.load(home=home, environ={'AIFLOW_DB_URI': f'sqlite:///{home}/aiflow.db'}))\n"
            "store.ensure_schema()\n"
            "with store.session() as s:\n    pass\n"
            "print(any(m == 'alembic' or m.startswith('alembic.') for m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_database_at_another_revision_is_still_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.ensure_schema()
    store.downgrade("-1")
    with pytest.raises(StoreError, match="run `aiflow db upgrade`"):
        _store(tmp_path).ensure_schema()
