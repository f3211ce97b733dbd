"""The reads that commands and pages run most — an execution, a workflow's executions, an execution's tries, a try
of a task, what a start needs of its workflow — written once, in SQL that SQLite and PostgreSQL both run.

`reading(config)` runs them in one read transaction:

- on a SQLite file already at the newest revision, through the stdlib sqlite3: SQLAlchemy is not imported at all
  (its import is most of a short CLI call: about 250 ms of `aiflow workflow-execution list`);
- otherwise — another database, a SQLite file that does not exist yet or is at another revision — through a
  SQLAlchemy connection, once `Store.ensure_schema` has created the schema or refused the database, as every other
  use of the store does.

Either way a read returns the same rows: dicts named as the fields of the records ops makes of them, times as
SQLAlchemy's DateTime gives them made aware (store.sqlite.stored_time), flags as bools. Standard library only at
import time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from aiflow.config import Config
from aiflow.errors import StoreError, StoreUnavailable
from aiflow.store.migrations import HEAD_REVISION
from aiflow.store.sqlite import file_of, open_existing, stored_time

Row = dict[str, Any]
# Runs one statement with its parameters; the rows it returns.
_Run = Callable[[str, Mapping[str, Any]], list[Row]]

_TIMES = frozenset({"begin_date", "end_date"})
_FLAGS = frozenset({"is_enabled"})

_EXECUTION = ("SELECT e.id AS id, w.namespace AS namespace, w.name AS workflow, "
              "e.snapshot_version AS snapshot_version, e.status AS status, e.run_type AS run_type, "
              "e.begin_date AS begin_date, e.end_date AS end_date, e.cause AS cause, e.message AS message "
              "FROM workflow_execution e JOIN workflow w ON w.id = e.workflow_id")
_TRY = ("SELECT execution_id, task_name AS task, try_number, status, begin_date, end_date, message, cause, worker "
        "FROM task_execution")
# A LIMIT that lets every row through, for an OFFSET without one (SQLite wants a LIMIT before an OFFSET), as
# SQLAlchemy writes it for each.
_NO_LIMIT = {"sqlite": " LIMIT -1", "postgresql": " LIMIT ALL"}


class Reader:
    """The reads, in one transaction of the store (see `reading`)."""

    def __init__(self, run: _Run, dialect: str) -> None:
        self._run = run
        self.dialect = dialect

    def _one(self, sql: str, **params: Any) -> Row | None:
        rows = self._run(sql, params)
        return rows[0] if rows else None

    def workflow_id(self, namespace: str, name: str) -> int | None:
        row = self._one("SELECT id FROM workflow WHERE namespace = :namespace AND name = :name",
                        namespace=namespace, name=name)
        return None if row is None else int(row["id"])

    def workflow_definition(self, namespace: str, name: str) -> str | None:
        """The workflow's latest definition (JSON), None if there is no such workflow."""
        row = self._one("SELECT definition FROM workflow WHERE namespace = :namespace AND name = :name",
                        namespace=namespace, name=name)
        return None if row is None else str(row["definition"])

    def latest_snapshot(self, namespace: str, name: str) -> Row | None:
        """What starting the workflow needs: `is_enabled`, `latest_version`, and its latest snapshot's `version`,
        `uri`, `sha256` and `workflow_file` (None when that snapshot is missing); None if there is no such
        workflow."""
        return self._one("SELECT w.is_enabled AS is_enabled, w.latest_version AS latest_version, "
                         "s.version AS version, s.uri AS uri, s.sha256 AS sha256, s.workflow_file AS workflow_file "
                         "FROM workflow w LEFT JOIN workflow_snapshot s "
                         "ON s.workflow_id = w.id AND s.version = w.latest_version "
                         "WHERE w.namespace = :namespace AND w.name = :name", namespace=namespace, name=name)

    def execution(self, execution_id: str) -> Row | None:
        """The execution (the fields of ops' ExecutionInfo), None if there is none."""
        return self._one(f"{_EXECUTION} WHERE e.id = :id", id=execution_id)

    def executions(self, workflow_id: int, status: str | None = None, limit: int | None = None,
                   offset: int | None = None) -> list[Row]:
        """The workflow's executions (only those with `status`, when given), newest first."""
        sql = f"{_EXECUTION} WHERE e.workflow_id = :workflow_id"
        params: dict[str, Any] = {"workflow_id": workflow_id}
        if status is not None:
            sql += " AND e.status = :status"
            params["status"] = status
        sql += " ORDER BY e.begin_date DESC"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = limit
        elif offset is not None:
            sql += _NO_LIMIT.get(self.dialect, "")
        if offset is not None:
            sql += " OFFSET :offset"
            params["offset"] = offset
        return self._run(sql, params)

    def tries(self, execution_id: str) -> list[Row]:
        """Every try of every task of the execution (the fields of ops' TaskExecutionInfo), by begin time, task and
        try."""
        return self._run(f"{_TRY} WHERE execution_id = :execution_id ORDER BY begin_date, task_name, try_number",
                         {"execution_id": execution_id})

    def task_try(self, execution_id: str, task: str, try_number: int | None = None) -> Row | None:
        """A try of the task (its latest unless `try_number` is given), None if there is none."""
        sql = f"{_TRY} WHERE execution_id = :execution_id AND task_name = :task"
        params: dict[str, Any] = {"execution_id": execution_id, "task": task}
        if try_number is not None:
            sql += " AND try_number = :try_number"
            params["try_number"] = try_number
        return self._one(f"{sql} ORDER BY try_number DESC LIMIT 1", **params)


def _row(names: Sequence[str], values: Sequence[Any]) -> Row:
    row = dict(zip(names, values, strict=True))
    for name in _TIMES.intersection(row):
        row[name] = stored_time(row[name])
    for name in _FLAGS.intersection(row):
        row[name] = bool(row[name])
    return row


@contextmanager
def reading(config: Config) -> Iterator[Reader]:
    """A Reader in one read transaction of the configured store. Database errors raise StoreUnavailable (the
    database cannot be reached or is locked past its timeout) or StoreError."""
    connection = _sqlite_at_head(config.db_uri)
    if connection is not None:
        try:
            yield Reader(_sqlite_run(connection, config.safe_db_uri), "sqlite")
        finally:
            connection.close()  # ends the transaction: it only read
        return
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

    from aiflow.store.db import Store

    store = Store(config)
    store.ensure_schema()
    with store.engine.connect() as conn:
        def run(sql: str, params: Mapping[str, Any]) -> list[Row]:
            try:
                result = conn.execute(text(sql), params)
                return [_row(list(result.keys()), values) for values in result]
            except SQLAlchemyError as exc:
                reason = exc.orig if isinstance(exc, DBAPIError) else exc
                error = StoreUnavailable if isinstance(exc, OperationalError) else StoreError
                raise error(f"cannot read the database {config.safe_db_uri}: {reason}") from None

        yield Reader(run, conn.dialect.name)


def _sqlite_at_head(uri: str) -> sqlite3.Connection | None:
    """A connection to the SQLite file of `uri` in a begun read transaction, if the file exists and its schema is
    at HEAD_REVISION; None otherwise (another database, no file, another revision, any error): SQLAlchemy's way
    then creates, migrates, refuses or reports it."""
    path = file_of(uri)
    if path is None:
        return None
    connection: sqlite3.Connection | None = None
    try:
        connection = open_existing(path)
        connection.execute("BEGIN")  # one snapshot for every read of the block (WAL: the writer goes on meanwhile)
        found = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        if found == [(HEAD_REVISION,)]:
            return connection
    except sqlite3.Error:
        pass
    if connection is not None:
        connection.close()
    return None


def _sqlite_run(connection: sqlite3.Connection, safe_uri: str) -> _Run:
    def run(sql: str, params: Mapping[str, Any]) -> list[Row]:
        try:
            cursor = connection.execute(sql, params)
            names = [column[0] for column in cursor.description]
            return [_row(names, values) for values in cursor.fetchall()]
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, the disk gone
            raise StoreUnavailable(f"cannot read the database {safe_uri}: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the database {safe_uri}: {exc}") from None

    return run
