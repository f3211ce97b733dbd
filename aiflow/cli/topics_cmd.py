"""`aiflow topics create | list`."""

from __future__ import annotations

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit, output_option


@click.group("topics")
def group() -> None:
    """aiflow's Kafka topics."""


@group.command("create")
@output_option
def create(fmt: str) -> None:
    """Create the missing topics and align the policies of existing ones (idempotent)."""
    from aiflow.kafka import topics

    reports = topics.create_topics(load_config())
    emit([{"topic": r.name, "action": r.action, "detail": r.detail} for r in reports], fmt)


@group.command("list")
@output_option
def list_(fmt: str) -> None:
    """The topics with their partitions, replication and policies."""
    from aiflow.kafka import topics

    emit(topics.describe_topics(load_config()), fmt,
         ["topic", "exists", "partitions", "replication", "cleanup.policy", "retention.ms", "purpose"])
