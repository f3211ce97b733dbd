"""What every function of ops starts with: the configuration and namespace defaults, and the switch to the REST
API in client mode. Light to import (no store, no Kafka), so a function can start work before loading them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from aiflow.config import Config
from aiflow.errors import AIFlowError


def _config(config: Config | None) -> Config:
    return config or Config.load()


P = ParamSpec("P")
R = TypeVar("R")


def _via_api(f: Callable[P, R]) -> Callable[P, R]:
    """In client mode (`api.url` set) call the function of the same name in `aiflow.ops.remote`, which asks
    the REST API, instead of `f`, which uses the database; a function the API does not offer yet is
    refused there rather than run against a database the client should not need.

    The configuration is loaded once here (when `config` is None) and handed on, so both sides get it.
    """
    @functools.wraps(f)
    def either(*args: P.args, **kwargs: P.kwargs) -> R:
        given = kwargs.get("config")
        config = given if isinstance(given, Config) else Config.load()
        kwargs["config"] = config
        if not config.values["api.url"]:
            return f(*args, **kwargs)
        from aiflow.ops import remote

        forward: Callable[P, R] | None = getattr(remote, f.__name__, None)
        if forward is None:
            raise AIFlowError(f"not available through the API yet: {f.__name__} (client mode, api.url = "
                              f"{config.values['api.url']}); run it where the database is reachable")
        return forward(*args, **kwargs)

    return either


def _ns(config: Config, namespace: str | None) -> str:
    return namespace or config.namespace
