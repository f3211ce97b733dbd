"""The log shipper: each try's output, from its log file on the worker to the logs topic.

A try's log file (`$AIFLOW_HOME/logs/<workflow>/<execution>/<task>/<try>.log`) stays the source of
truth on the worker; the shipper copies it to `<prefix>.logs` in `LogChunk` records keyed by try, so
`aiflow task-execution logs` and the web pages read it from any machine, and a try whose worker died
still shows what it printed.

Guarantees:
- The worker's loop never waits for it: `follow` and `finish` only note the try under a lock and wake
  the shipper's own thread, which reads the files and produces (a plain idempotent producer, outside
  the worker's transactions).
- Batched: every BATCH_SECONDS the shipper reads what each try added and produces it in chunks of at
  most MAX_LOG_CHUNK_BYTES (cut at a line end when a chunk is full), with the producer's linger and lz4
  compression on top; a task printing a hundred thousand lines a second makes a few records a second.
- Bounded, and nothing lost while the file exists: at most MAX_IN_FLIGHT bytes of a try wait in the
  producer. While Kafka is away the shipper reads no further, and goes on from the position Kafka last
  acknowledged once it is back (messages never time out locally; a delivery that fails anyway rewinds
  the try to its acknowledged position). A chunk shipped twice is printed once: chunks carry their
  position in the file and readers skip what they have read.
- After `finish` (the try's process ended) the rest of the file is shipped, then a last chunk with
  `end` set. A worker that stops gives its shipper `stop`'s grace to do that for its last tries.
- A worker SIGKILLed takes the unacknowledged tail with it (the last batch or so): what Kafka has
  acknowledged stays readable until `topics.logs_retention_ms`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from aiflow.config import Config
from aiflow.errors import KafkaUnavailable
from aiflow.kafka import clients, topics
from aiflow.protocol.messages import LogChunk, TaskCommand
from aiflow.protocol.records import MAX_LOG_CHUNK_BYTES, log_partition, try_key

log = logging.getLogger(__name__)

TryKey = tuple[str, str, int]  # execution, task, try

BATCH_SECONDS = 0.2  # how often each try's new output is read and produced
LINGER_MS = 100  # the producer's batching on top: chunks of several tries share a request
MAX_IN_FLIGHT = 4 * 1024 * 1024  # bytes of one try produced and not yet acknowledged
WARN_EVERY = 60.0  # seconds between two warnings about failed deliveries


@dataclass
class _Try:
    """What the shipper knows of one try: its file, and how far it is queued and acknowledged."""

    command: TaskCommand
    path: Path
    partition: int | None = None
    file: IO[bytes] | None = None
    queued: int = 0  # file position up to which chunks are produced
    acked: int = 0  # file position up to which Kafka has acknowledged them, in order
    in_flight: int = 0  # chunks produced and not yet reported by the producer
    rewind: bool = False  # a delivery failed: start again from `acked` once nothing is in flight
    finished: bool = False  # the try's process ended: ship the rest, then the end chunk
    end_queued: bool = False
    end_acked: bool = False

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class LogShipper:
    """Ships the log files of the tries it is told about, on a thread of its own (started by the first
    `follow`); `stop` ends it. It makes no network call before its thread runs."""

    def __init__(self, config: Config, worker: str = "") -> None:
        self.config = config
        self.worker = worker
        self._tries: dict[TryKey, _Try] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._grace = 0.0
        self._partitions: int | None = None
        self._last_warning = -WARN_EVERY
        self._fatal = False  # the producer reported a fatal error: make a new one
        self.records = 0  # chunks acknowledged, for tests and curiosity

    # -- what the worker calls (never blocks) ----------------------------------------------------
    def follow(self, command: TaskCommand, path: Path) -> None:
        """Ship this try's log file from its start, as it grows."""
        with self._lock:
            self._tries.setdefault(command.try_key, _Try(command, path))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
                self._thread.start()
        self._wake.set()

    def finish(self, key: TryKey) -> None:
        """The try's process has ended: ship what is left of its file, then its end chunk."""
        with self._lock:
            found = self._tries.get(key)
            if found is not None:
                found.finished = True
        self._wake.set()

    def pending(self) -> int:
        """How many tries still have output (or their end chunk) to ship."""
        with self._lock:
            return len(self._tries)

    def stop(self, grace: float = 5.0) -> None:
        """Ship what the finished tries still have, for at most `grace` seconds, then stop the thread."""
        self._grace = grace
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(grace + 5.0)

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        producer = self._producer()
        deadline: float | None = None
        while True:
            self._wake.wait(BATCH_SECONDS)
            self._wake.clear()
            if self._stopping.is_set() and deadline is None:
                deadline = time.monotonic() + self._grace
            with self._lock:
                tries = list(self._tries.items())
            for key, state in tries:
                try:
                    self._ship(producer, state)
                except (KafkaException, KafkaUnavailable) as exc:  # no partition count yet: Kafka is away
                    self._warn(f"cannot ship task output yet: {exc}")
                    break
                except Exception:  # a file that cannot be read, a record that cannot be made: log, go on
                    log.exception("log shipper: could not ship the log of %s/%s try %s", key[0], key[1], key[2])
            producer.poll(0)
            if self._fatal:
                producer = self._renew(producer)
            with self._lock:
                for key, state in tries:
                    if state.end_acked:
                        state.close()
                        del self._tries[key]
                left = len(self._tries)
            if deadline is not None and (left == 0 or time.monotonic() >= deadline):
                break
        producer.flush(max(0.0, (deadline or 0) - time.monotonic()))
        with self._lock:
            for state in self._tries.values():
                state.close()
            if self._tries:
                log.warning("log shipper: stopped with the output of %d tries not all shipped (their files have it)",
                            len(self._tries))

    def _producer(self) -> Producer:
        self._fatal = False
        settings: dict[str, Any] = {
            # Nothing lost while the file exists: a chunk waits for Kafka as long as it takes, instead of
            # failing after librdkafka's default 5 minutes (the in-flight bound keeps the queue small).
            "message.timeout.ms": 0,
            # The logs topic keeps lz4 batches as produced (its compression.type): no second compression.
            "compression.type": "lz4",
        }
        return clients.producer(self.config, role="log-shipper", linger_ms=LINGER_MS, **settings)

    def _renew(self, old: Producer) -> Producer:
        """After a fatal producer error (its idempotence state is lost): a new producer; every try
        with chunks in flight on the old one starts again from what Kafka acknowledged."""
        old.purge()
        old.poll(0)
        with self._lock:
            for state in self._tries.values():
                state.in_flight, state.rewind = 0, True
        return self._producer()

    def _ship(self, producer: Producer, state: _Try) -> None:
        if state.rewind:
            if state.in_flight:
                return
            state.queued, state.end_queued, state.rewind = state.acked, False, False
        if state.end_queued:
            return
        finished = state.finished  # before reading: a try that has ended writes nothing after this read
        if state.partition is None:
            c = state.command
            state.partition = log_partition(try_key(c.execution_id, c.task, c.try_number), self._partition_count())
        room = MAX_IN_FLIGHT - (state.queued - state.acked)
        data = self._read(state, room) if room > 0 else b""
        start = 0
        while start < len(data):
            piece = data[start:start + MAX_LOG_CHUNK_BYTES]
            if len(piece) == MAX_LOG_CHUNK_BYTES and b"\n" in piece:
                piece = piece[:piece.rindex(b"\n") + 1]  # whole lines when a chunk is full
            if not self._produce(producer, state, piece, end=False):
                return
            start += len(piece)
        if finished and room > 0 and len(data) < room:  # the whole file is queued: the end follows
            self._produce(producer, state, b"", end=True)

    def _read(self, state: _Try, room: int) -> bytes:
        if state.file is None:
            try:
                state.file = open(state.path, "rb")  # noqa: SIM115  (kept open while the try runs)
            except FileNotFoundError:
                return b""
        state.file.seek(state.queued)
        return state.file.read(room)

    def _produce(self, producer: Producer, state: _Try, data: bytes, end: bool) -> bool:
        c = state.command
        chunk = LogChunk(c.namespace, c.workflow, c.execution_id, c.task, c.try_number, state.queued, data, end,
                         self.worker)
        record = chunk.to_record(state.partition)
        assert state.partition is not None

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            state.in_flight -= 1
            if err is not None:
                state.rewind = True
                self._fatal = self._fatal or err.fatal()
                self._warn(f"a chunk of {c.execution_id}/{c.task} try {c.try_number} was not delivered "
                           f"({err.str()}); shipping again from position {state.acked}")
                return
            self.records += 1
            if chunk.position == state.acked:
                state.acked = chunk.end_position
                state.end_acked = state.end_acked or end

        try:
            producer.produce(topics.name(self.config, topics.LOGS), key=record.key_bytes(), value=record.value,
                             partition=state.partition, on_delivery=delivered)
        except BufferError:  # the producer's queue is full: go on next round
            return False
        state.in_flight += 1
        state.queued = chunk.end_position
        state.end_queued = end
        return True

    def _warn(self, text: str) -> None:
        """At most one warning a minute: an outage must not flood the worker's log."""
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY:
            self._last_warning = now
            log.warning("log shipper: %s", text)

    def _partition_count(self) -> int:
        if self._partitions is None:
            self._partitions = topics.partition_count(self.config, topics.LOGS)
        return self._partitions

