"""Where the broker's time goes, request by request: `benchmarks/run.py --request-log`.

With `--request-log`, the lab's broker starts with its request logger at DEBUG
(`AIFLOW_BROKER_REQUEST_LOG_LEVEL`, read by aiflow/kafka/local/log4j2.properties): for each request it
served, Kafka logs a `Completed request:` line, a JSON object with the request's header (its API and
the client's id) and its times in milliseconds:

- `requestQueueTimeMs`: waiting for one of the broker's request threads;
- `localTimeMs`: that thread's work (an append to the log, a lookup);
- `remoteTimeMs`: parked until something else happened — for a transactional produce or offset commit,
  the check that the transaction holds the partition (KIP-890's verification, a request the broker
  sends to its own transaction coordinator) and, for an offset commit, the group coordinator's write;
- `responseQueueTimeMs` and `sendTimeMs`: back to the network thread and onto the socket.

`totalTimeMs` runs from the request's arrival to its response's last byte sent. A client sends its
requests to one broker on one connection, which the broker serves one request at a time, in order.

After the run, `summary` reads the broker's log and gives, for each client role (the `aiflow-ROLE-HOST`
client id, `ROLE` kept) and API: how many requests, the total's p50 and p90 (nearest rank), and the
median of each part. Logging every request costs the broker CPU, so the times are higher than in a run without it:
the table says how the time of one kind of request splits, and how kinds compare, not what a run
without it measures.
"""

from __future__ import annotations

import json
import socket
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from lab import percentile

MARK = "Completed request:"
# aiflow's clients are `aiflow-ROLE-HOST` (aiflow/kafka/clients.py), and the lab's run on this machine;
# the broker's own clients (its transaction marker sender, its verification of transactions) have names
# of their own, kept whole.
CLIENT_PREFIX, CLIENT_SUFFIX = "aiflow-", f"-{socket.gethostname()}"
PARTS = [("queue", "requestQueueTimeMs"), ("local", "localTimeMs"), ("remote", "remoteTimeMs"),
         ("resp. queue", "responseQueueTimeMs"), ("send", "sendTimeMs")]
# Left out: requests that wait by design (a fetch waits for data) and those sent on a timer or once
# per connection (heartbeats, metadata, coordinator lookups).
LEFT_OUT = frozenset({"FETCH", "HEARTBEAT", "CONSUMER_GROUP_HEARTBEAT", "API_VERSIONS", "METADATA",
                      "BROKER_HEARTBEAT", "BROKER_REGISTRATION", "FIND_COORDINATOR"})


def role_of(client_id: str) -> str:
    """ROLE of an aiflow client's id; any other id as it is."""
    if client_id.startswith(CLIENT_PREFIX) and client_id.endswith(CLIENT_SUFFIX):
        return client_id[len(CLIENT_PREFIX):-len(CLIENT_SUFFIX)] or client_id
    return client_id or "?"


def timed_requests(path: Path) -> dict[tuple[str, str], list[dict[str, float]]]:
    """The times of each (client role, API)'s requests in a broker log, those of LEFT_OUT excluded
    (lines that do not parse are passed over)."""
    found: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    with open(path, errors="replace") as log:
        for line in log:
            start = line.find(MARK)
            if start < 0:
                continue
            try:
                request: dict[str, Any] = json.loads(line[start + len(MARK):line.rfind("}") + 1])
            except ValueError:
                continue
            header = request.get("requestHeader", {})
            api = str(header.get("requestApiKeyName", "?"))
            if api not in LEFT_OUT:
                times = {key: float(request.get(key, 0)) for key in ["totalTimeMs", *(k for _, k in PARTS)]}
                found[(role_of(str(header.get("clientId", ""))), api)].append(times)
    return found


def summary(path: Path, min_requests: int = 5) -> list[str]:
    """Lines of a table: each (client role, API) with at least `min_requests` requests."""
    if not path.exists():
        return [f"no broker request log: the lab's broker did not run ({path})"]
    head = f"{'client role':30} {'API':22} {'n':>6} {'p50':>6} {'p90':>6}  " + " ".join(f"{n:>11}" for n, _ in PARTS)
    lines = ["broker time per request (ms; parts are p50s; logging each request slows the broker):", head]
    for (role, api), requests in sorted(timed_requests(path).items()):
        if len(requests) < min_requests:
            continue
        totals = [r["totalTimeMs"] for r in requests]
        parts = " ".join(f"{statistics.median(r[key] for r in requests):>11.1f}" for _, key in PARTS)
        lines.append(f"{role[:30]:30} {api[:22]:22} {len(requests):>6} {statistics.median(totals):>6.1f} "
                     f"{percentile(totals, 90):>6.1f}  {parts}")
    return lines
