"""SQLite as aiflow opens it, for both ways it is opened: SQLAlchemy's engine (store.db), which reads and writes,
and the stdlib connection of store.reads, which only reads and loads no SQLAlchemy. Standard library only."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote

# How long a statement waits for a lock another process holds (a scheduler's projector writing, another command
# creating the schema) before it fails with "database is locked".
BUSY_TIMEOUT = 30.0


def file_of(uri: str) -> str | None:
    """The database file of a plain `sqlite:///PATH` URI (PATH relative to the working folder, or absolute with a
    fourth slash; %-escapes decoded as SQLAlchemy decodes them); None for any other URI — another database,
    SQLite in memory, a URI with query options — which SQLAlchemy alone opens."""
    if not uri.startswith("sqlite:///") or "?" in uri:
        return None
    path = unquote(uri.removeprefix("sqlite:///"))
    return path if path and path != ":memory:" else None


def set_pragmas(dbapi_connection: Any) -> None:
    """What every connection of the engine sets, before its first statement."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys otherwise
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer (the mode stays with the file)
    cursor.close()


def open_existing(path: str) -> sqlite3.Connection:
    """A connection to the database file at `path` that never creates it (sqlite3.OperationalError when there is
    none), in autocommit mode: the caller begins its own transaction. For reads only, so it sets no pragma: the
    file is in WAL mode since the engine first opened it, and foreign keys matter to writes alone."""
    return sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)


def aware(moment: datetime) -> datetime:
    """A time of the store as an aware datetime: SQLite hands them back naive, and the store writes UTC only."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def stored_time(value: datetime | str | None) -> datetime | None:
    """A time column as a driver hands it back — a datetime (PostgreSQL), or on SQLite, read without SQLAlchemy's
    types, the ISO text SQLAlchemy wrote — as what SQLAlchemy's DateTime gives (it parses that text with
    datetime.fromisoformat too), made aware."""
    if value is None:
        return None
    return aware(datetime.fromisoformat(value) if isinstance(value, str) else value)
