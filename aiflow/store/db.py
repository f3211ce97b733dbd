"""Opening the metadata database and migrating it (Alembic, revisions in aiflow/store/migrations)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aiflow.config import Config
from aiflow.errors import StoreError, StoreUnavailable
from aiflow.store import sqlite
from aiflow.store.migrations import HEAD_REVISION

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
# Alembic is imported where migrations run, not here: most commands only read and write rows, and
# importing it costs about 100 ms of every CLI call.

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_engines: dict[str, Engine] = {}


def _alembic_config(engine: Engine, connection: Any) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def engine_for(uri: str) -> Engine:
    engine = _engines.get(uri)
    if engine is None:
        if uri.startswith("sqlite:///"):
            path = sqlite.file_of(uri)
            if path is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(uri, connect_args={"timeout": sqlite.BUSY_TIMEOUT})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                sqlite.set_pragmas(dbapi_connection)
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
            from alembic.runtime.migration import MigrationContext

            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self, revision: str = "head") -> None:
        with self.engine.begin() as conn:
            from alembic import command

            command.upgrade(_alembic_config(self.engine, conn), revision)

    def downgrade(self, revision: str = "-1") -> None:
        with self.engine.begin() as conn:
            from alembic import command

            command.downgrade(_alembic_config(self.engine, conn), revision)

    def reset(self) -> None:
        """Drop every table (data included) and create the schema again."""
        with self.engine.begin() as conn:
            from alembic import command

            command.downgrade(_alembic_config(self.engine, conn), "base")
        self.upgrade()

    def ensure_schema(self) -> None:
        """Create the schema in an empty database; refuse one at another revision."""
        if self._checked:
            return
        if self._at_head():
            self._checked = True
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

    def _at_head(self) -> bool:
        """Whether the database is at HEAD_REVISION, read straight from Alembic's table; False when that
        cannot be told this way (no table yet, another revision, an error): ensure_schema then looks closer."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
        except SQLAlchemyError:
            return False

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        self.ensure_schema()
        with self._sessions() as session, session.begin():
            yield session
