"""`aiflow scheduler start` and `aiflow worker start`: the services as threads of one process.

A service started while Kafka is away waits for it, saying which address it waits for, and starts
once it answers; once running, no Kafka error ends it (aiflow/kafka/transactions.py). If a service
dies for another reason (a bug) the others are stopped and the process exits non-zero, so a
supervisor (or a second instance, which takes over the partitions) can act; a half-working
scheduler is worse.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence

from aiflow import metrics
from aiflow.config import Config
from aiflow.errors import AIFlowError
from aiflow.kafka import clients
from aiflow.process import READY, private_home

log = logging.getLogger(__name__)


Say = Callable[[str], None]


def handle_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` (in the main thread only: Python's rule)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())


def run_services(name: str, services: Sequence[tuple[str, Callable[[threading.Event], None]]],
                 stop: threading.Event | None = None, say: Say | None = None) -> None:
    """Run each service's `run(stop)` in a thread until SIGTERM/SIGINT or until one of them fails;
    `say` hears READY once they run."""
    stop = stop or threading.Event()
    failures: list[BaseException] = []

    def guard(label: str, target: Callable[[threading.Event], None]) -> None:
        try:
            target(stop)
        except BaseException as exc:
            log.exception("%s: %s failed", name, label)
            failures.append(exc)
            stop.set()

    handle_signals(stop)
    threads = [threading.Thread(target=guard, args=(label, run), name=f"aiflow-{label}") for label, run in services]
    for t in threads:
        t.start()
    if say is not None:
        say(READY)
    while not stop.is_set():
        stop.wait(0.5)
    for t in threads:
        t.join(timeout=60)
    if failures:
        raise AIFlowError(f"{name} stopped: {type(failures[0]).__name__}: {failures[0]}")


def prepare_kafka(config: Config, stop: threading.Event, say: Say | None = None) -> bool:
    """Wait for Kafka, then create aiflow's topics where they are missing (where the cluster lets us:
    otherwise they are the operators' to create). False if stopped first."""
    from aiflow.kafka import topics

    if not clients.wait_until_reachable(config, stop, say):
        return False
    try:
        created = [r.name for r in topics.create_topics(config) if r.action == "created"]
    except AIFlowError as exc:
        log.error("cannot create aiflow's topics (%s): they must exist, see `aiflow topics create`", exc)
    else:
        if created:
            log.info("created topics %s", ", ".join(created))
    return True


def run_scheduler(config: Config, stop: threading.Event | None = None, say: Say | None = None) -> None:
    from aiflow.scheduler.router import Router
    from aiflow.scheduler.service import Scheduler
    from aiflow.store.db import Store
    from aiflow.store.projector import Projector

    stop = stop or threading.Event()
    handle_signals(stop)
    private_home(config.home)
    metrics.serve_process(config, "metrics.scheduler_port", stop, lag=True)
    if not prepare_kafka(config, stop, say):
        return
    Store(config).ensure_schema()
    router, scheduler, projector = Router(config), Scheduler(config), Projector(config)
    log.info("scheduler process: Kafka %s, topics %s.*, database %s", config.bootstrap, config.topic_prefix,
             config.safe_db_uri)
    run_services("scheduler", [("router", router.run), ("scheduler", scheduler.run), ("projector", projector.run)],
                 stop, say)


def run_worker(config: Config, slots: int | None = None, stop: threading.Event | None = None,
               say: Say | None = None, queues: tuple[str, ...] = ("default",)) -> None:
    from aiflow.worker.service import Worker

    stop = stop or threading.Event()
    handle_signals(stop)
    private_home(config.home)
    metrics.serve_process(config, "metrics.worker_port", stop, lag=False)
    if not prepare_kafka(config, stop, say):
        return
    worker = Worker(config, slots=slots or int(config.values["worker.slots"]),
                    heartbeat_interval=float(config.values["worker.heartbeat_interval"]),
                    stop_grace=float(config.values["worker.stop_grace"]), queues=queues)
    run_services("worker", [("worker", worker.run)], stop, say)
