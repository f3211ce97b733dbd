"""`aiflow broker start | stop | status`: the local development broker."""

from __future__ import annotations

import signal
import time

import click

from aiflow.cli.common import load_config
from aiflow.cli.output import emit, emit_result, output_option


@click.group("broker")
def group() -> None:
    """The local Kafka broker for development (fetched from Maven Central, run on loopback)."""


@group.command("start")
@click.option("-d", "--daemon", is_flag=True, help="Return once the broker answers; it keeps running.")
@click.option("--no-topics", is_flag=True, help="Do not create aiflow's topics.")
@output_option
def start(daemon: bool, no_topics: bool, fmt: str) -> None:
    """Start the broker of this aiflow home and create aiflow's topics on it."""
    from aiflow.kafka import topics
    from aiflow.kafka.local_broker import LocalBroker

    config = load_config()
    broker = LocalBroker(config)
    started = broker.start()
    nodes = f"{len(broker.nodes)} nodes" if len(broker.nodes) > 1 else f"pid {broker.pid()}"
    created = [] if no_topics else [r.name for r in topics.create_topics(config) if r.action == "created"]
    message = (f"Broker already running at {config.bootstrap} ({nodes})." if not started
               else f"Broker started at {config.bootstrap} ({nodes}); log: {broker.log_file}")
    emit_result(message + (f"\nCreated topics: {', '.join(created)}" if created else ""),
                {"bootstrap": config.bootstrap, "started": started, "pid": broker.pid(), "nodes": len(broker.nodes),
                 "log": str(broker.log_file), "created_topics": created}, fmt)
    if daemon or not started:
        return
    click.echo("Running in the foreground; Ctrl-C stops it.")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            for node_id, process in broker.processes.items():
                if process.poll() is not None:
                    broker.stop()
                    raise click.ClickException(f"broker node {node_id} exited with code {process.returncode}; "
                                               f"see {broker.node(node_id).log_file}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        broker.stop()
        click.echo("Broker stopped.")


@group.command("stop")
@output_option
def stop(fmt: str) -> None:
    """Stop the broker of this aiflow home."""
    from aiflow.kafka.local_broker import LocalBroker

    stopped = LocalBroker(load_config()).stop()
    emit_result("Broker stopped." if stopped else "No broker was running.", {"stopped": stopped}, fmt)


@group.command("status")
@output_option
def status(fmt: str) -> None:
    """Whether the broker runs and answers. Exit code 1 when it does not answer."""
    from aiflow.kafka.local_broker import LocalBroker

    state = LocalBroker(load_config()).status()
    emit({"running": state.running, "answers": state.answers, "pid": state.pid, "bootstrap": state.bootstrap,
          "log": str(state.log_file), "data": str(state.data_dir)}, fmt)
    if not state.answers:
        raise SystemExit(1)
