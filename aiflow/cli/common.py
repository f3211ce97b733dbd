"""What several commands share: loading the configuration, the namespace option."""

from __future__ import annotations

import click

from aiflow.config import Config


def load_config() -> Config:
    return Config.load()


namespace_option = click.option("-n", "--namespace", default=None,
                                help="Namespace (default: the configured one, normally 'default').")
