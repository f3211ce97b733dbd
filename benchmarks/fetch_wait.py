"""The trade-off of the consumers' `fetch.wait.max.ms`, measured with bare librdkafka clients on a local
broker: `python benchmarks/fetch_wait.py [--settle SECONDS] [WAIT_MS ...]` (default 50 500).

aiflow's consumers set it to 50 ms (aiflow/kafka/clients.py), so an idle consumer sends a fetch to the
broker 20 times a second. A fetch waits at the broker until a record is there (`fetch.min.bytes` 1) or
until the wait runs out, so a longer wait should cost nothing in latency and save the broker most of
its idle work. For each wait this measures, after the broker has settled (its JIT compiler done):

- idle: 10 read_committed consumers, each assigned the 3 partitions of a topic nobody writes to and
  polled by a thread (as aiflow's services have about 10 clients), 20 s to settle, then 60 s of the
  broker's CPU (utime + stime of its threads) and this process's, in % of one core;
- latency: 100 records, each in a transaction of its own (as the services write), and 100 records of
  an idempotent producer outside transactions (as `send_event` writes), sent at random gaps of
  50-300 ms; time from just before the send to the record's arrival at a read_committed consumer.

It does not go through aiflow's clients: until `kafka.properties` can override the consumers'
`fetch.wait.max.ms`, `run.py --kafka-property fetch.wait.max.ms=...` cannot change it there.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from run import Lab, _cpu_snapshot, percentile  # benchmarks/run.py, next to this file

CONSUMERS = 10


def idle_cpu(bootstrap: str, broker_pid: int, wait_ms: int) -> tuple[float, float]:
    """% of one core used by the broker and by this process with CONSUMERS idle consumers."""
    stop = threading.Event()
    consumers = []
    for i in range(CONSUMERS):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"idle-{wait_ms}-{i}",
                             "isolation.level": "read_committed", "enable.auto.commit": False,
                             "fetch.wait.max.ms": wait_ms})
        consumer.assign([TopicPartition("idle", p, 0) for p in range(3)])
        consumers.append(consumer)

    def poll(consumer: Consumer) -> None:
        while not stop.is_set():
            consumer.poll(0.5)

    threads = [threading.Thread(target=poll, args=(c,)) for c in consumers]
    for t in threads:
        t.start()
    time.sleep(20)
    broker_before, own_before = _cpu_snapshot(broker_pid), _cpu_snapshot(os.getpid())
    time.sleep(60)
    broker, own = _cpu_snapshot(broker_pid).percent_of_core(broker_before), _cpu_snapshot(os.getpid()).percent_of_core(
        own_before)
    stop.set()
    for t in threads:
        t.join()
    for c in consumers:
        c.close()
    return broker["broker"], own["services"]


def latency(bootstrap: str, wait_ms: int) -> dict[str, list[float]]:
    """Milliseconds from send to a read_committed consumer, for records in transactions and outside."""
    transactional = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"lat-{wait_ms}", "acks": "all",
                              "linger.ms": 0})
    transactional.init_transactions()
    plain = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{wait_ms}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "fetch.wait.max.ms": wait_ms})
    ends = {p: consumer.get_watermark_offsets(TopicPartition("lat", p))[1] for p in range(3)}
    consumer.assign([TopicPartition("lat", p, ends[p]) for p in range(3)])
    consumer.poll(1.0)
    samples: dict[str, list[float]] = {"in a transaction": [], "no transaction": []}
    for kind, values in samples.items():
        for i in range(100):
            time.sleep(random.uniform(0.05, 0.3))
            sent = time.perf_counter()
            if kind == "in a transaction":
                transactional.begin_transaction()
                transactional.produce("lat", b"x", key=str(i))
                transactional.commit_transaction()
            else:
                plain.produce("lat", b"x", key=str(i))
                plain.flush()
            while (message := consumer.poll(5.0)) is None or message.error():
                pass
            values.append((time.perf_counter() - sent) * 1000)
    consumer.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("waits", nargs="*", type=int, default=[50, 500], metavar="WAIT_MS")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds for the broker to settle first")
    args = parser.parse_args()
    lab = Lab()
    try:
        lab.start_broker()
        bootstrap = lab.base.bootstrap
        broker_pid = int(lab.broker.nodes[0].pid_file.read_text())
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for topic in admin.create_topics([NewTopic("idle", 3, 1), NewTopic("lat", 3, 1)]).values():
            topic.result()
        time.sleep(args.settle)
        before = _cpu_snapshot(broker_pid)
        time.sleep(30)
        print(f"broker with no client: {_cpu_snapshot(broker_pid).percent_of_core(before)['broker']:.1f} % "
              "of one core", flush=True)
        for wait_ms in args.waits:
            broker, clients = idle_cpu(bootstrap, broker_pid, wait_ms)
            print(f"fetch.wait.max.ms={wait_ms}: {CONSUMERS} idle consumers: broker {broker:.1f} %, "
                  f"the consumers {clients:.1f} % of one core", flush=True)
            for kind, values in latency(bootstrap, wait_ms).items():
                print(f"    send -> read_committed consumer, {kind}: p50 {statistics.median(values):.1f} ms, "
                      f"p95 {percentile(values, 95):.1f}, max {max(values):.1f} (n {len(values)})", flush=True)
    finally:
        lab.close()


if __name__ == "__main__":
    main()
