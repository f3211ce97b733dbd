"""The SQL tables. The database is a queryable projection: Kafka holds the history."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class NamespaceRow(Base):
    __tablename__ = "namespace"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    properties: Mapped[str] = mapped_column(Text, default="{}")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkflowRow(Base):
    __tablename__ = "workflow"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_workflow_namespace_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(200), ForeignKey("namespace.name", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(200))
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    latest_version: Mapped[int] = mapped_column(Integer)
    workflow_file: Mapped[str] = mapped_column(String(500))
    definition: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SnapshotRow(Base):
    __tablename__ = "workflow_snapshot"
    __table_args__ = (UniqueConstraint("workflow_id", "version", name="uq_snapshot_workflow_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    workflow_file: Mapped[str] = mapped_column(String(500))
    definition: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExecutionRow(Base):
    __tablename__ = "workflow_execution"
    __table_args__ = (Index("ix_execution_workflow_begin", "workflow_id", "begin_date"),
                      Index("ix_execution_workflow_status", "workflow_id", "status", "begin_date"))
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow.id", ondelete="CASCADE"))
    snapshot_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    run_type: Mapped[str] = mapped_column(String(20))
    begin_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cause: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[str] = mapped_column(Text, default="")  # why it failed, when no try says it


class TaskExecutionRow(Base):
    __tablename__ = "task_execution"
    __table_args__ = (UniqueConstraint("execution_id", "task_name", "try_number", name="uq_task_try"),)
    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    execution_id: Mapped[str] = mapped_column(String(64), ForeignKey("workflow_execution.id", ondelete="CASCADE"))
    task_name: Mapped[str] = mapped_column(String(200))
    try_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    begin_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    cause: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(String(200), default="")


class ScheduleRow(Base):
    __tablename__ = "workflow_schedule"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow.id", ondelete="CASCADE"))
    expression: Mapped[str] = mapped_column(String(200))
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_reason: Mapped[str] = mapped_column(Text, default="")  # set when the scheduler paused it
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TriggerRow(Base):
    __tablename__ = "workflow_trigger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(Integer, ForeignKey("workflow.id", ondelete="CASCADE"))
    definition: Mapped[str] = mapped_column(Text)
    is_paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_reason: Mapped[str] = mapped_column(Text, default="")  # set when the scheduler paused it
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
