"""What several commands share: loading the configuration, the namespace option."""

from __future__ import annotations

import logging
import os

import click

from aiflow.config import Config


def load_config() -> Config:
    return Config.load()


namespace_option = click.option("-n", "--namespace", default=None,
                                help="Namespace (default: the configured one, normally 'default').")


def service_logging() -> None:
    """Logging of a long-running service (scheduler, worker, standalone, connector): its own lines at
    INFO, Kafka outages as the quiet lines of aiflow/kafka/health.py, librdkafka's own from WARNING."""
    if "AIFLOW_LOG_LEVEL" in os.environ:
        return
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("aiflow.librdkafka").setLevel(logging.WARNING)
    logging.getLogger("aiflow.kafka").setLevel(logging.INFO)
