"""How fast the event client stores events: `send_event` one at a time, and `send_events` in batches.

Both return only once every event is durable (acknowledged by every in-sync replica: the client's
producer has acks=all), so a rate here is of events stored, not of events queued in the client. Each
event has a key of 8 characters out of 1,000 (`sensor-N`) and a value of 64 characters, with no
context: what a sensor or a small service sends. One EventClient, made and connected before the
clock starts; run.py runs it as `send_events` against the lab's broker (one broker on loopback, so
"every in-sync replica" is one).
"""

from __future__ import annotations

import statistics
import time

from lab import Lab, Result

from aiflow import EventClient
from aiflow.config import Config

ONE_TARGET = 1_000.0  # events/s, send_event one at a time
BATCH_TARGET = 50_000.0  # events/s, send_events in batches
BATCHES = (1_000, 10_000)
VALUE = "v" * 64


def send_events(lab: Lab, quick: bool) -> list[Result]:
    figures = measure(lab.config(), quick)
    one = figures["one_at_a_time_per_s"]
    batched = figures[f"batches_of_{BATCHES[-1]}_per_s"]
    method = __doc__ or ""
    return [
        Result("send_event, one at a time, durable on return", "events/s", one, None, None,
               int(figures["one_at_a_time_events"]), f">= {ONE_TARGET:,.0f}", one >= ONE_TARGET, method,
               {"call_p50_ms": figures["one_call_p50_ms"], "call_p95_ms": figures["one_call_p95_ms"]}),
        Result(f"send_events, batches of {BATCHES[-1]:,}, durable on return", "events/s", batched, None, None,
               int(figures["batched_events"]), f">= {BATCH_TARGET:,.0f}", batched >= BATCH_TARGET, method,
               {f"batches_of_{size}_per_s": figures[f"batches_of_{size}_per_s"] for size in BATCHES}),
    ]


def measure(config: Config, quick: bool) -> dict[str, float]:
    """events/s of `send_event` called one at a time (and each call's median and p95 in ms), and of
    `send_events` in batches of each size in BATCHES."""
    singles = 300 if quick else 2_000
    batched = 20_000 if quick else 200_000
    figures: dict[str, float] = {}
    with EventClient(config) as client:
        client.send_events([(f"sensor-{i}", VALUE) for i in range(100)])  # connect; the producer's id
        calls = []
        began = time.perf_counter()
        for i in range(singles):
            sent = time.perf_counter()
            client.send_event(f"sensor-{i % 1000}", VALUE)
            calls.append(time.perf_counter() - sent)
        figures["one_at_a_time_per_s"] = singles / (time.perf_counter() - began)
        figures["one_at_a_time_events"] = singles
        ms = sorted(c * 1000 for c in calls)
        figures["one_call_p50_ms"] = statistics.median(ms)
        figures["one_call_p95_ms"] = ms[round(0.95 * (len(ms) - 1))]
        for size in BATCHES:
            batches = [[(f"sensor-{i % 1000}", VALUE) for i in range(start, start + size)]
                       for start in range(0, batched, size)]
            began = time.perf_counter()
            for batch in batches:
                client.send_events(batch)
            figures[f"batches_of_{size}_per_s"] = batched / (time.perf_counter() - began)
        figures["batched_events"] = batched
    return figures
