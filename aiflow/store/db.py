"""Opening the metadata database and migrating it (Alembic, revisions in aiflow/store/migrations)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aiflow.config import Config
from aiflow.errors import StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_engines: dict[str, Engine] = {}


def _alembic_config(engine: Engine, connection: Any) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def engine_for(uri: str) -> Engine:
    engine = _engines.get(uri)
    if engine is None:
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(uri, connect_args={"timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys otherwise
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                cursor.close()
        else:
            engine = create_engine(uri, pool_pre_ping=True)
        _engines[uri] = engine
    return engine


class Store:
    """The metadata database of one configuration."""

    def __init__(self, config: Config) -> None:
        self.uri = config.db_uri
        try:
            self.engine = engine_for(self.uri)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot use the database {self._safe_uri()}: {exc}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._checked = False

    def _safe_uri(self) -> str:
        return self.engine.url.render_as_string(hide_password=True) if hasattr(self, "engine") else \
            self.uri.split("@")[-1]

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self, revision: str = "head") -> None:
        with self.engine.begin() as conn:
            command.upgrade(_alembic_config(self.engine, conn), revision)

    def downgrade(self, revision: str = "-1") -> None:
        with self.engine.begin() as conn:
            command.downgrade(_alembic_config(self.engine, conn), revision)

    def reset(self) -> None:
        """Drop every table (data included) and create the schema again."""
        with self.engine.begin() as conn:
            command.downgrade(_alembic_config(self.engine, conn), "base")
        self.upgrade()

    def ensure_schema(self) -> None:
        """Create the schema in an empty database; refuse one at another revision."""
        if self._checked:
            return
        # Several processes may find the database empty at once (a scheduler starting while a command
        # runs): one creates the schema, the others fail to and then find it made.
        deadline = time.monotonic() + 15
        while True:
            try:
                current = self.current_revision()
                if current is None:
                    if inspect(self.engine).has_table("workflow"):
                        # Another process may be creating the schema right now (on SQLite the tables
                        # appear before the revision is stamped): wait for it before calling it broken.
                        if time.monotonic() < deadline:
                            time.sleep(0.2)
                            continue
                        raise StoreError(f"{self._safe_uri()} has aiflow tables but no migration revision: "
                                         "run `aiflow db reset` (it deletes the data)")
                    self.upgrade()
                elif current != head_revision():
                    raise StoreError(f"the database is at revision {current}, this aiflow needs {head_revision()}: "
                                     "run `aiflow db upgrade`")
                break
            except SQLAlchemyError as exc:
                racing = "locked" in str(exc) or "already exists" in str(exc)
                if not racing or time.monotonic() > deadline:
                    reason = exc.orig if isinstance(exc, DBAPIError) else exc
                    if isinstance(exc, OperationalError):
                        raise StoreUnavailable(f"cannot reach the database {self._safe_uri()}: {reason}") from None
                    raise StoreError(f"cannot use the database {self._safe_uri()}: {reason}") from None
                time.sleep(0.2)
        self._checked = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        self.ensure_schema()
        with self._sessions() as session, session.begin():
            yield session
