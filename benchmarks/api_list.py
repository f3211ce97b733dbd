"""How fast the web server lists executions, over the API and as pages.

`python benchmarks/api_list.py [--quick]`.

A fresh SQLite store (the default database) gets one workflow with 10,000 executions of 5 tries
each (a fifth of them FAILED, the rest SUCCESS), written directly as the projector would. A web
server (`aiflow.web.server.WebServer`: uvicorn serving the REST API) runs on a free loopback port in
this process; an HTTP client (httpx, one connection, as a browser tab would) then asks 200 times, in
turn, from the API: the newest 50 executions, 50 FAILED ones, the page at offset 5,000, and one
execution with its tries; and the pages: the workflow's page (its rule graph and newest 20
executions), its 100th page of FAILED ones, and one execution's page. Each request's wall time,
from sending to the last byte, is recorded; the figures are the median and p95 of each kind. The
target is p95 <= 200 ms. No Kafka is needed: these read the store.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from aiflow.config import Config
from aiflow.store.db import Store
from aiflow.store.models import ExecutionRow, TaskExecutionRow, WorkflowRow
from aiflow.web.server import WebServer

TARGET_MS = 200.0
EXECUTIONS = 10_000
TRIES = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(config: Config, executions: int) -> str:
    """The store with one workflow and `executions` executions; returns one execution's id."""
    store = Store(config)
    store.ensure_schema()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with store.session() as s:
        workflow = WorkflowRow(namespace="default", name="bench", is_enabled=True, latest_version=1,
                               workflow_file="bench/bench.py", definition="{}", create_time=start, update_time=start)
        s.add(workflow)
        s.flush()
        for i in range(executions):
            begin = start + timedelta(seconds=i)
            execution_id = f"{i:012x}"
            status = "FAILED" if i % 5 == 0 else "SUCCESS"
            s.add(ExecutionRow(id=execution_id, workflow_id=workflow.id, snapshot_version=1, status=status,
                               run_type="MANUAL", begin_date=begin, end_date=begin + timedelta(seconds=1),
                               cause="benchmark", message=""))
            for t in range(TRIES):
                s.add(TaskExecutionRow(id=f"{execution_id}/t{t}/1", execution_id=execution_id, task_name=f"t{t}",
                                       try_number=1, status=status, begin_date=begin, end_date=begin, message="",
                                       cause="execution started", worker="w1"))
    return f"{executions // 2:012x}"


def measure(quick: bool) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="aiflow-bench-api-"))
    config = Config.load(home=home, environ={})
    executions = EXECUTIONS // 5 if quick else EXECUTIONS
    one = fill(config, executions)
    server = WebServer(config, "127.0.0.1", _free_port())
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop,), daemon=True)
    thread.start()
    assert server.listening.wait(30), "the web server did not start"
    base = server.url
    kinds = {"newest 50": "/api/v1/namespaces/default/workflows/bench/executions?limit=50",
             "50 FAILED": "/api/v1/namespaces/default/workflows/bench/executions?limit=50&status=FAILED",
             "offset 5,000": f"/api/v1/namespaces/default/workflows/bench/executions?limit=50"
                             f"&offset={executions // 2}",
             "one with its tries": f"/api/v1/executions/{one}",
             "executions page": "/namespaces/default/workflows/bench",
             "FAILED, page 100": "/namespaces/default/workflows/bench?status=FAILED&page=100",
             "execution page": f"/executions/{one}"}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            for path in kinds.values():  # warm-up
                client.get(path).raise_for_status()
            for _ in range(50 if quick else 200):
                for kind, path in kinds.items():
                    started = time.perf_counter()
                    client.get(path).raise_for_status()
                    times[kind].append((time.perf_counter() - started) * 1000)
    finally:
        stop.set()
        thread.join(timeout=10)
        shutil.rmtree(home, ignore_errors=True)  # the store of 10,000 executions
    return {"executions": executions, "tries": executions * TRIES,
            "figures": {k: {"median_ms": statistics.median(v), "p95_ms": sorted(v)[int(len(v) * 0.95) - 1],
                            "n": len(v)} for k, v in times.items()}}


def report(result: dict[str, Any]) -> str:
    lines = [f"REST API and pages over HTTP, {result['executions']:,} executions ({result['tries']:,} tries) "
             f"in SQLite; target p95 <= {TARGET_MS:.0f} ms"]
    for kind, f in result["figures"].items():
        lines.append(f"  {kind:<20} median {f['median_ms']:6.1f} ms   p95 {f['p95_ms']:6.1f} ms   n={f['n']}"
                     f"   {'meets' if f['p95_ms'] <= TARGET_MS else 'MISSES'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 executions, 50 rounds: a smoke run")
    print(report(measure(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
