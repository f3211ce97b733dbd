"""The worker loop: takes START commands, runs each try in a process group of its own, reports.

Guarantees:
- A try starts at most once. Taking a START and reporting it RUNNING commit together with the
  command's offset in one Kafka transaction *before* anything of the task runs. A worker that dies
  before that commit leaves the command to another worker; one that dies after it is caught by the
  scheduler's heartbeat timeout, which fails the try (and retries it where the task allows). So that
  a try's start does not wait for the fork after the commit, the fork server forks it *during* the
  commit, held: set up, but waiting for the worker's go, which comes once the commit is done. A
  commit that fails kills the held process; one whose worker dies ends by itself (zygote.py). An
  execution's first try on a worker is forked after the commit: its snapshot is downloaded first,
  which is not done inside an open transaction.
- Back-pressure, not queues: with all `slots` busy the worker takes no command it cannot run. It reads
  up to `READ_AHEAD` commands ahead (not taken: their offsets are not committed, so they are read again
  if it goes) and then pauses its partitions of the tasks topic; a slot that frees takes the next one
  read ahead at once, and the partitions resume while enough are left to hide their next fetch. A
  never-ending task holds its slot until stopped.
- STOP is SIGTERM to the try's whole process group, a grace period, then SIGKILL: children the
  task spawned are stopped with it.
- A finished try is forgotten only once its report has committed: if the commit fails, the next
  step reports it again.
- Workers own the tasks topic: a command that cannot be read goes to the dead-letter topic in the
  transaction that commits its offset. They read the control topic without owning it (the router
  checks it), so they skip what they cannot read there.
- Placement: a worker serves the queues it was started with (`--queue`, default "default") and reads
  only their tasks topics, as a member of the one worker group `<prefix>-worker`: Kafka assigns each
  topic's partitions among the members subscribed to it. A command whose queue is not its topic's
  is dead-lettered and its try reported FAILED.
- Lost offsets start nothing old: when the group has no committed offset for a partition of the
  tasks topic (offsets expired after a quiet week, or deleted), the commands already in it are
  checked against the scheduler's state first, and only those whose try still waits for a worker
  start (`_Unverified`).
- If the fork server dies, the tries it forked are failed at once (they stop themselves when
  their parent goes) and a new fork server is started, after a back-off if it keeps dying.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL, STDOUT, Popen
from typing import Protocol

from confluent_kafka import KafkaException, Message, TopicPartition

from aiflow import housekeeping, metrics
from aiflow.config import Config, without_credentials
from aiflow.errors import KafkaUnavailable
from aiflow.events.context import ENV_ISOLATED_NAMESPACES, TaskContext
from aiflow.kafka import clients, sending, topics
from aiflow.kafka.readers import DefinitionFollower, WorkflowId, read_state
from aiflow.kafka.transactions import TransactionalLoop
from aiflow.protocol.deadletter import dead_letter, decode_or_dead_letter
from aiflow.protocol.messages import ControlCommand, InboxMessage, TaskCommand, WorkflowDefinition
from aiflow.protocol.records import RawRecord, Record
from aiflow.protocol.topics import DEFAULT_QUEUE, tasks_role
from aiflow.sdk.workflow import check_queue
from aiflow.store.snapshots import fetch, file_in, read_workflow_file
from aiflow.worker.logship import LogShipper
from aiflow.worker.runner import STOPPED_EXIT_CODE
from aiflow.worker.zygote import LOST_EXIT_CODE, ForkServer, module_names

log = logging.getLogger(__name__)

TryKey = tuple[str, str, int]  # execution, task, try
# How often a worker looks for working folders and task logs past `worker.working_dir_retention`.
SWEEP_INTERVAL = 300.0
# How many commands a full worker reads ahead before it pauses its partitions, and below how many left it
# resumes them. A resumed partition is fetched again only once the fetch waiting at the broker returns (up to
# its fetch.wait.max.ms, 500 ms when idle): what is left must keep the slots busy meanwhile. A command is a
# few hundred bytes.
READ_AHEAD = 500
RESUME_BELOW = 250


class TaskProcess(Protocol):
    pid: int

    def poll(self) -> int | None: ...


@dataclass
class Running:
    command: TaskCommand
    process: TaskProcess
    log_file: Path
    started: float
    stop_reason: str = ""
    kill_at: float | None = None
    reported: set[str] = field(default_factory=set)
    ended: bool = False  # its exit was seen and its process group killed; the report may still be pending
    final: tuple[str, str] | None = None  # (status, message) once it ended


def log_path(home: Path, workflow: str, execution_id: str, task: str, try_number: int) -> Path:
    return home / "logs" / workflow / execution_id / task / f"{try_number}.log"


def working_dir(home: Path, workflow: str, execution_id: str) -> Path:
    return home / "working_dir" / workflow / execution_id


def _tail(path: Path, lines: int = 8) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def task_environment(environ: Mapping[str, str], config: Config) -> dict[str, str]:
    """The environment of a task: the worker's, with what the event client needs (Kafka's address,
    the topic prefix, the home, the isolated namespaces as in force here), and — unless
    `worker.task_credentials` — without the database URI, the secret Kafka properties and the webhook
    token, which a task has no business with."""
    env = dict(environ) if config.values["worker.task_credentials"] else without_credentials(environ)
    env.update({"AIFLOW_HOME": str(config.home), "AIFLOW_KAFKA_BOOTSTRAP": config.bootstrap,
                "AIFLOW_TOPIC_PREFIX": config.topic_prefix, "PYTHONUNBUFFERED": "1",
                ENV_ISOLATED_NAMESPACES: str(config.values["worker.isolated_namespaces"])})
    return env


class ReadAhead:
    """Commands read from the tasks topic but not taken yet (no slot was free), in order per partition.

    Their offsets are not committed (`not_taken`): a worker that goes leaves them to the next owner of
    their partitions, and one that rolls back or loses a partition forgets them, as Kafka gives them again.
    """

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], deque[Message]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._partitions.values())

    def add(self, msgs: Iterable[Message]) -> None:
        for msg in msgs:
            self._partitions.setdefault((msg.topic() or "", msg.partition() or 0), deque()).append(msg)

    def take(self, count: int) -> list[Message]:
        """Up to `count` commands, the oldest of each partition first, one partition after another."""
        taken: list[Message] = []
        while len(taken) < count and self._partitions:
            for key in list(self._partitions):
                if len(taken) == count:
                    break
                waiting = self._partitions[key]
                taken.append(waiting.popleft())
                if not waiting:
                    del self._partitions[key]
        return taken

    def not_taken(self) -> dict[tuple[str, int], int]:
        """The offset of the first command not taken, for each partition that has one."""
        return {key: waiting[0].offset() or 0 for key, waiting in self._partitions.items()}

    def forget(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Drop what was read of these partitions (all of them when None)."""
        if partitions is None:
            self._partitions.clear()
        for tp in partitions or ():
            self._partitions.pop((tp.topic, tp.partition), None)


class _Unverified:
    """The commands of tasks-topic partitions read without a committed offset.

    For each such partition: its end offset when it was assigned, and the tries that the scheduler's
    state then held as QUEUED. A command below that end offset is from before: it may start only if
    its try is among them. The scheduler commits a START and the QUEUED state in one transaction, so a
    command visible in the topic has its state visible too. Commands from the end offset on are new.
    """

    def __init__(self) -> None:
        self.below: dict[tuple[str, int], int] = {}  # (topic, partition): a worker may read several queues' topics
        self.queued: set[tuple[str, str, int]] = set()

    def add(self, config: Config, partitions: list[TopicPartition]) -> None:

        reader = clients.consumer(config, role="worker-verify")
        try:
            for tp in partitions:
                self.below[(tp.topic, tp.partition)] = int(reader.get_watermark_offsets(tp, timeout=30)[1])
        finally:
            reader.close()
        state = read_state(config, range(topics.partition_count(config, topics.STATE)), "worker")
        for _, record in state.values():
            self.queued |= record.queued_tries()
        log.warning("worker: no committed offsets for tasks partitions %s: their %s commands already there start "
                    "only if their try still waits for a worker",
                    sorted(f"{tp.topic}/{tp.partition}" for tp in partitions),
                    sum(self.below[(tp.topic, tp.partition)] for tp in partitions))

    def waiting(self, topic: str, partition: int, offset: int, command: TaskCommand) -> bool:
        if offset >= self.below.get((topic, partition), -1):
            return True
        return command.try_key in self.queued


class Worker:
    def __init__(self, config: Config, slots: int = 4, name: str | None = None, heartbeat_interval: float = 5.0,
                 stop_grace: float = 10.0, fork_server: bool = True, leave_when_full_after: float = 5.0,
                 shutdown_grace: float | None = None, queues: Sequence[str] = (DEFAULT_QUEUE,)) -> None:
        self.config = config
        self.slots = max(1, slots)
        # The queues it serves, and the tasks topic of each: all of them in the one group `<prefix>-worker`,
        # where Kafka gives each topic's partitions to the members that subscribe to it.
        self.queues = tuple(dict.fromkeys(check_queue(q) for q in queues)) or (DEFAULT_QUEUE,)
        self.queue_of_topic = {topics.name(config, tasks_role(q)): q for q in self.queues}
        self._queue_topics_ready = self.queues == (DEFAULT_QUEUE,)  # the default one is made with the others
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.heartbeat_interval = heartbeat_interval
        self.stop_grace = stop_grace
        # How long tries get to stop when the worker itself shuts down (default: stop_grace).
        self.shutdown_grace = stop_grace if shutdown_grace is None else shutdown_grace
        self.running: dict[TryKey, Running] = {}
        self.not_started: dict[TryKey, tuple[TaskCommand, str]] = {}  # taken, could not start, not yet reported
        self.stopped_before_start: dict[tuple[str, str | None, int | None], float] = {}
        # What the open step has reported or taken, acted on once its transaction commits (`_commit_step`).
        self._reaped: list[tuple[TryKey, str]] = []
        self._reported_not_started: list[TryKey] = []
        self._to_launch: list[TaskCommand] = []
        self._held: dict[TryKey, int] = {}  # tries of `_to_launch` forked ahead, held: fork server request ids
        # A follower: an idle fetch waits at the broker, and a full worker reads ahead instead of pausing at
        # once, so a freed slot never waits for a resumed partition's fetch (READ_AHEAD).
        self.read_ahead = ReadAhead()
        self.loop = TransactionalLoop(config, "worker", list(self.queue_of_topic),
                                      f"{config.topic_prefix}-worker", on_assign=self._assigned,
                                      on_revoke=self.read_ahead.forget)
        self.control = clients.consumer(config, role="worker-control", follow=True)
        # Only snapshots the workflows topic lists for their workflow run (WorkflowDefinition.snapshots).
        self.definitions = DefinitionFollower(config, "worker", self._on_definition)
        self._control_assigned = False
        self.paused = False
        self.unverified = _Unverified()
        self._last_heartbeat = 0.0
        # A worker that stays full (long or never-ending tries) leaves the group, so the commands in
        # its partitions go to workers with room; it joins again when a slot frees up.
        self.leave_when_full_after = leave_when_full_after
        self._full_since: float | None = None
        # Tries start as forks of a process that has imported the task runner already (zygote.py);
        # without it (or if it dies) each try is a new Python process.
        self.preload = bool(config.values["worker.preload"])
        self.forks = ForkServer(self._task_env(), self.preload) if fork_server else None
        # Workflows uploaded while it runs: their warm fork servers are made ready on a thread (the
        # snapshot is downloaded for it, and only its workflow file read), so even their first try finds
        # the file's imports loaded.
        self._to_preload: queue.SimpleQueue[WorkflowDefinition | None] = queue.SimpleQueue()
        self._preloader: threading.Thread | None = None
        # Each try's log file is copied to the logs topic on a thread of its own (logship.py).
        self.logs = LogShipper(config, self.name)
        self._fork_server_restarts = 0
        self._fork_server_next_start = 0.0
        self.working_dir_retention = float(config.values["worker.working_dir_retention"])
        self._next_sweep = time.monotonic() + 10.0  # not in the way of a start: the first one 10 s in
        metrics.watch_worker(self)

    def _task_env(self) -> dict[str, str]:
        return task_environment(os.environ, self.config)

    def _on_definition(self, workflow: WorkflowId, definition: WorkflowDefinition | None) -> None:
        if definition is None or not self.definitions.caught_up or not self.preload or self.forks is None:
            return  # the definitions read at the start are not warmed: their tries warm them as they come
        if definition.enabled and definition.task_queues & set(self.queues):
            if self._preloader is None:
                self._preloader = threading.Thread(target=self._preload, name="aiflow-preload", daemon=True)
                self._preloader.start()
            self._to_preload.put(definition)

    def _preload(self) -> None:
        while (definition := self._to_preload.get()) is not None:
            try:
                # The file and the names beside it only: the snapshot's artifacts are not unpacked for this.
                source, beside = read_workflow_file(self.config, definition.snapshot_uri, definition.snapshot_sha256,
                                                    definition.workflow_file)
                forks = self.forks
                if forks is not None and forks.alive():
                    forks.warm(source, module_names(beside))
            except Exception as exc:  # its tries warm it instead
                log.warning("worker %s: could not preload %s.%s: %s", self.name, definition.namespace,
                            definition.workflow, exc)

    def _check_fork_server(self) -> None:
        """Start a new fork server when the old one died: at once the first time, then after a
        back-off doubling to 60 s while it keeps dying. Tries of the dead one end on their own
        (`ForkedTask.poll`) and are reported FAILED by `_reap`."""
        if self.forks is None or self.forks.alive():
            return
        now = time.monotonic()
        if now < self._fork_server_next_start:
            return
        log.error("worker %s: the fork server died (exit code %s); starting a new one", self.name,
                  self.forks.process.returncode)
        self.forks.close()
        self.forks = ForkServer(self._task_env(), self.preload)
        self._fork_server_restarts += 1
        self._fork_server_next_start = now + min(60.0, 0.5 * 2 ** self._fork_server_restarts)

    def _start_process(self, argv: list[str], env: dict[str, str], cwd: Path, log_file: Path) -> TaskProcess:
        if self.forks is not None and self.forks.alive():
            try:
                return self.forks.spawn(argv, env, str(cwd), str(log_file))
            except OSError as exc:
                log.warning("worker: fork server failed (%s); starting a new process instead", exc)
        with open(log_file, "ab") as out:
            return Popen([sys.executable, "-m", "aiflow.worker.runner", *argv], cwd=cwd, env=env, stdout=out,
                         stderr=STDOUT, stdin=DEVNULL, start_new_session=True)

    # -- reports -------------------------------------------------------------------------------
    def _refuse(self, msg: Message, command: TaskCommand, reason: str) -> None:
        """A START this worker must not run: dead-lettered with the reason, and its try reported FAILED."""
        log.warning("worker: START of %s/%s try %s of %s refused: %s", command.workflow, command.task,
                    command.try_number, command.execution_id, reason)
        self._produce(dead_letter(msg, reason, "worker"))
        self._report(command, "FAILED", reason)

    def _report(self, command: TaskCommand, status: str | None, message: str = "", pid: int | None = None) -> None:
        self._produce(command.report(status, message[-4000:], self.name, pid).to_record())

    def _produce(self, record: Record) -> None:
        sending.produce(self.loop.producer, self.config, record)
        self.loop.metrics.produced(record)

    # -- starting ------------------------------------------------------------------------------
    def _assigned(self, partitions: list[TopicPartition]) -> None:
        # The group rebalances eagerly: what was assigned before was revoked first. A worker that is full and
        # has read ahead all it may starts them paused; else resumed, since librdkafka keeps a partition
        # paused through its revocation: one paused before and given back would never be fetched again.
        self.paused = len(self.running) >= self.slots and len(self.read_ahead) >= READ_AHEAD
        if self.paused:
            self.loop.consumer.pause(partitions)
        else:
            self.loop.consumer.resume(partitions)
        committed = self.loop.consumer.committed(partitions, timeout=30)
        fresh = [tp for tp in committed if tp.offset < 0]
        if fresh:
            self.unverified.add(self.config, fresh)

    def _still_waiting(self, msg: RawRecord, command: TaskCommand) -> bool:
        """False for an old command, read again because offsets were lost, whose try no longer waits."""
        if self.unverified.waiting(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, command):
            return True
        log.info("worker: START of %s/%s try %s of %s passed over: read again without committed offsets, and "
                 "the try no longer waits for a worker", command.workflow, command.task, command.try_number,
                 command.execution_id)
        return False

    def _take_commands(self) -> None:
        free = self.slots - len(self.running) + len(self._reaped)  # reaped tries have ended: their slots are free
        if free <= 0:
            now = time.monotonic()
            self._full_since = self._full_since or now
            if self.loop.subscribed and now - self._full_since >= self.leave_when_full_after:
                log.info("worker %s: full for %.0f s; leaving the group so other workers take the commands",
                         self.name, now - self._full_since)
                self.loop.leave()
                self.read_ahead.forget()
                self.paused = False
            if not self.loop.subscribed:
                return
        else:
            self._full_since = None
            if not self.loop.subscribed:
                log.info("worker %s: a slot is free; joining the group again", self.name)
                self.loop.join()
        assignment = self.loop.consumer.assignment()
        if free <= 0:
            # Read ahead (one at a time while a failed step is retried input by input: nothing then stays
            # read), then pause. Polling goes on with the partitions paused: it returns nothing, but serves
            # rebalances and keeps this member inside max.poll.interval.ms, so other workers can take partitions.
            room = 0 if self.loop.one_by_one else READ_AHEAD - len(self.read_ahead)
            if assignment and not self.paused and room <= 0:
                self.loop.consumer.pause(assignment)
                self.paused = True
            self.read_ahead.add(self.loop.read(max_records=max(1, room), timeout=0.005))  # none across a rebalance
            return
        if self.paused and assignment and len(self.read_ahead) < RESUME_BELOW:
            self.loop.consumer.resume(assignment)
            self.paused = False
        want = 1 if self.loop.one_by_one else free
        msgs = self.read_ahead.take(want)
        if len(msgs) < want:
            # While tries run, wake often to notice the ones that end (and to read STOPs); idle, wait longer for
            # commands: the poll returns as soon as one arrives.
            revocations = self.loop.revocations
            msgs += self.loop.read(max_records=want - len(msgs), timeout=0 if msgs else 0.005 if self.running else 0.5)
            if self.loop.revocations != revocations:
                # Those taken from what was read ahead are of partitions revoked meanwhile (the group
                # rebalances eagerly: all of them), which whoever owns them now reads from the committed offset.
                msgs = []
        self.loop.taking(msgs)
        if not msgs:
            return
        dead: list[Record] = []
        decoded = [(msg, decode_or_dead_letter(msg, TaskCommand.from_record, "worker", dead)) for msg in msgs]
        # An upload just before its first START may not have been read yet: a command is refused only
        # once the workflows topic was read to its end (else the step is retried).
        if any(c is not None and not self._announced(c) for _, c in decoded) and not self.definitions.read_to_end():
            raise KafkaUnavailable("the workflows topic could not be read to its end to check a START")
        commands = []
        self.loop.begin()
        for record in dead:
            self._produce(record)
        for msg, command in decoded:
            if command is None or not self._still_waiting(msg, command):
                continue
            topic_queue = self.queue_of_topic.get(msg.topic() or "")
            if command.queue != topic_queue:  # written to another queue's topic by hand: not for these workers
                self._refuse(msg, command, f"a START of queue {command.queue!r} on the tasks topic of queue "
                                           f"{topic_queue!r} ({msg.topic()}): refusing to run it")
                continue
            if not self._announced(command):
                self._refuse(msg, command, f"snapshot {command.snapshot_sha256[:12]} ({command.snapshot_uri}, "
                                           f"{command.workflow_file}) is not one the workflows topic lists for "
                                           f"{command.namespace}.{command.workflow}: refusing to run it")
                continue
            if self._stopped_already(command):
                self._report(command, "STOPPED", "stopped before it started")
                continue
            self._report(command, "RUNNING")
            commands.append(command)
        self._to_launch = commands  # once the step's transaction has committed (`_commit_step`)
        for command in commands:
            self._fork_ahead(command)

    def _announced(self, command: TaskCommand) -> bool:
        return self.definitions.announced((command.namespace, command.workflow), command.snapshot_uri,
                                          command.snapshot_sha256, command.workflow_file)

    def _stopped_already(self, command: TaskCommand) -> bool:
        keys = [(command.execution_id, None, None), (command.execution_id, command.task, None),
                (command.execution_id, command.task, command.try_number)]
        return any(k in self.stopped_before_start for k in keys)

    def _prepare(self, command: TaskCommand) -> tuple[list[str], dict[str, str], Path, Path]:
        """What a try's process needs: its arguments, environment, folder (the snapshot unpacked into
        the execution's working folder) and log file."""
        home = self.config.home
        log_file = log_path(home, command.workflow, *command.try_key)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        folder = fetch(self.config, command.snapshot_uri, command.snapshot_sha256,
                       working_dir(home, command.workflow, command.execution_id))
        workflow_file = file_in(folder, command.workflow_file)
        context = TaskContext(command.namespace, command.workflow, command.execution_id, command.task,
                              command.try_number)
        env = {**self._task_env(), **context.to_env()}
        return [str(workflow_file), command.workflow, command.task], env, workflow_file.parent, log_file

    def _fork_ahead(self, command: TaskCommand) -> None:
        """Ask the fork server for a taken try's process before the step commits, held until `_launch`
        lets it run; whatever fails here is done again, and reported, by `_launch`. Not for the first
        try of an execution on this worker: downloading its snapshot inside the open transaction could
        outlast the transaction's timeout."""
        forks = self.forks
        if forks is None or not forks.alive():
            return
        if not working_dir(self.config.home, command.workflow, command.execution_id).is_dir():
            return  # the execution's first try here: its snapshot is downloaded after the commit, not in it
        try:
            argv, env, cwd, log_file = self._prepare(command)
            self._held[command.try_key] = forks.request(argv, env, str(cwd), str(log_file), hold=True)
        except Exception as exc:
            log.info("worker: could not fork %s ahead (%s); it starts after the commit", command.try_key, exc)

    def _cancel_held(self) -> None:
        """The step's commit failed (or did not happen): the tries forked for it never run."""
        held, self._held = self._held, {}
        for request_id in held.values():
            if self.forks is not None:
                self.forks.cancel(request_id)

    def _launch(self, command: TaskCommand) -> None:
        key: TryKey = command.try_key
        held = self._held.pop(key, None)
        process: TaskProcess | None = None
        if held is not None and self.forks is not None:
            try:
                forked = self.forks.result(held)
            except OSError as exc:
                log.warning("worker: the try %s forked ahead did not start (%s); starting it again", key, exc)
            else:
                try:
                    self.forks.release(forked)
                    process = forked
                except OSError as exc:  # it ended while held (its server died, or its hold ran out)
                    self.forks.abandon(forked.pid)
                    log.warning("worker: the try %s forked ahead ended before its go (%s); starting it again",
                                key, exc)
        log_file = log_path(self.config.home, command.workflow, *key)
        self.logs.follow(command, log_file)
        try:
            if process is None:
                argv, env, cwd, log_file = self._prepare(command)
                process = self._start_process(argv, env, cwd, log_file)
        except Exception as exc:
            log.exception("worker: could not start %s", key)
            with open(log_file, "a") as out:
                out.write(f"aiflow worker {self.name}: could not start the task: {exc}\n")
            self.logs.finish(key)
            # Reported with the next finished tries (`_reap`), so a failing report cannot keep the
            # commands after this one from starting.
            self.not_started[key] = (command, f"could not start the task: {exc}")
            return
        log.info("worker: started %s/%s try %s of %s (pid %s)", command.workflow, command.task,
                 command.try_number, command.execution_id, process.pid)
        self.running[key] = Running(command, process, log_file, time.time())

    # -- stopping ------------------------------------------------------------------------------
    def _read_control(self) -> None:
        if not self._control_assigned:
            # Every worker reads every STOP from now on (recent ones too: a START may still be on its way).
            control_topic = topics.name(self.config, topics.CONTROL)
            end = self.control.get_watermark_offsets(TopicPartition(control_topic, 0), timeout=10)[1]
            self.control.assign([TopicPartition(control_topic, 0, max(0, end - 1000))])
            self._control_assigned = True
        for msg in self.control.consume(100, timeout=0):
            if msg.error() is not None:
                continue
            c = decode_or_dead_letter(msg, ControlCommand.from_record, "worker-control", None)
            if c is None:
                continue
            self.stopped_before_start[(c.execution_id, c.task, c.try_number)] = time.time()
            for key, run in self.running.items():
                if c.matches(*key):
                    self._stop(run, c.reason or "stop", kill=c.kind == "KILL")
        horizon = time.time() - 600
        self.stopped_before_start = {k: t for k, t in self.stopped_before_start.items() if t > horizon}

    def _stop(self, run: Running, reason: str, kill: bool = False) -> None:
        if run.process.poll() is not None:
            return
        run.stop_reason = run.stop_reason or reason
        sig = signal.SIGKILL if kill else signal.SIGTERM
        try:
            os.killpg(run.process.pid, sig)
        except ProcessLookupError:
            return
        if not kill and run.kill_at is None:
            run.kill_at = time.time() + self.stop_grace

    def _reap(self) -> None:
        self._reaped, self._reported_not_started = [], []
        now = time.time()
        finished = []
        for key, run in self.running.items():
            code = run.process.poll()
            if code is None:
                if run.kill_at is not None and now >= run.kill_at:
                    log.warning("worker: %s did not stop within %.0f s; killing it", key, self.stop_grace)
                    self._kill_group(run)
                    run.kill_at = None
                continue
            if not run.ended:  # the task is gone: its children go with it (once: the group id may be reused)
                self._kill_group(run)
                run.ended = True
                self.logs.finish(key)
            if code == LOST_EXIT_CODE:
                status, message = "FAILED", "the worker's fork server died while the try ran"
            elif run.stop_reason:
                status, message = "STOPPED", f"stopped ({run.stop_reason})"
            elif code == 0:
                status, message = "SUCCESS", ""
            else:
                status, message = "FAILED", _tail(run.log_file) or f"exit code {code}"
                if code == STOPPED_EXIT_CODE or code < 0:
                    message = f"terminated by a signal (exit code {code})\n{message}"
            run.final = (status, message)
            finished.append((key, run, status, message))
        if not finished and not self.not_started:
            return
        self.loop.begin()  # committed with the RUNNING reports of the commands this step takes
        for _key, run, status, message in finished:
            self._report(run.command, status, message)
        for command, message in self.not_started.values():
            self._report(command, "FAILED", message)
        self._reaped = [(key, status) for key, _run, status, _message in finished]
        self._reported_not_started = list(self.not_started)

    def _commit_step(self) -> None:
        """Commit the step's reports and the offsets of the commands it took, in one transaction; then
        forget the tries whose end is now reported for good, and start the commands taken: from here on
        those tries are ours. Should the commit fail, nothing of this happens: the step is rolled back,
        the ended tries are reported again and the commands read again."""
        to_launch, reaped, not_started = self._to_launch, self._reaped, self._reported_not_started
        self._to_launch, self._reaped, self._reported_not_started = [], [], []
        if not self.loop.in_transaction:  # nothing to commit, or aborted: the ended tries are reported again
            self._cancel_held()
            return
        try:
            self._commit()
        except BaseException:
            self._cancel_held()
            raise
        for key in not_started:
            self.not_started.pop(key, None)
        for key, status in reaped:
            run = self.running.pop(key)
            log.info("worker: %s/%s try %s of %s %s", run.command.workflow, key[1], key[2], key[0], status)
        for command in to_launch:
            self._launch(command)

    def _commit(self) -> None:
        """Commit the open transaction with the offsets of the commands taken, not of those read ahead."""
        self.loop.commit(self.read_ahead.not_taken())

    def _roll_back(self, abort: bool) -> None:
        """A failed step: its transaction aborted and the partitions rewound to their committed offsets, so
        the commands read ahead come again."""
        self.read_ahead.forget()
        self.loop.abort()

    @staticmethod
    def _kill_group(run: Running) -> None:
        try:
            os.killpg(run.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _heartbeat(self) -> None:
        """Each interval: a heartbeat for every running try, and a beacon to every inbox partition (so
        each scheduler hears that workers are alive even when this one runs nothing)."""
        now = time.time()
        if now - self._last_heartbeat < self.heartbeat_interval:
            return
        self._last_heartbeat = now
        self.loop.begin()
        for partition in range(topics.partition_count(self.config, topics.INBOX)):
            self._produce(InboxMessage.for_worker(self.name, self.slots - len(self.running),
                                                  self.queues).to_record(partition))
        for run in self.running.values():
            if run.process.poll() is None:
                self._report(run.command, None, pid=run.process.pid)
        self._commit()

    # -- the loop ------------------------------------------------------------------------------
    def step(self) -> None:
        if not self._queue_topics_ready:  # a worker may start before any workflow uses its queue
            created = topics.ensure_queue_topics(self.config, self.queues)
            if created:
                log.info("worker %s: created the tasks topics %s", self.name, ", ".join(created))
            self._queue_topics_ready = True
        self.definitions.poll()
        self._check_fork_server()
        self._read_control()
        self._reap()
        self._take_commands()
        self._commit_step()
        self._heartbeat()
        self._sweep()

    def _sweep(self) -> None:
        """Every SWEEP_INTERVAL: remove the working folders and task logs of executions in which
        nothing changed for `worker.working_dir_retention` seconds, except those of tries this worker
        runs (or has yet to report). Folders are moved aside here and deleted on a thread, so this
        step stays short; a failure is logged and the loop goes on."""
        now = time.monotonic()
        if self.working_dir_retention <= 0 or now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        in_use = {key[0] for key in self.running} | {key[0] for key in self.not_started}
        removed: list[Path] = []
        for root in (self.config.home / "working_dir", self.config.home / "logs"):
            try:
                removed += housekeeping.sweep(root, self.working_dir_retention, in_use, depth=2, background=True)
            except OSError as exc:
                log.warning("worker %s: could not clean %s: %s", self.name, root, exc)
        if removed:
            names = sorted({f"{p.parent.name}/{p.name}" for p in removed})
            log.info("worker %s: removed %d working folders and log folders unchanged for %.0f s: %s%s", self.name,
                     len(removed), self.working_dir_retention, ", ".join(names[:20]),
                     f" and {len(names) - 20} more" if len(names) > 20 else "")

    def run(self, stop: threading.Event) -> None:
        log.info("worker %s: started with %d slots, serving queues %s", self.name, self.slots, ", ".join(self.queues))
        try:
            self.definitions.catch_up(stop)
            self.loop.run_until(stop, self.step, self._roll_back)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Stop every try (they count as FAILED, so retries run elsewhere), report them, leave the group."""
        self._cancel_held()
        for run in self.running.values():
            self._stop(run, "worker shutdown")
        deadline = time.time() + self.shutdown_grace
        while any(r.process.poll() is None for r in self.running.values()) and time.time() < deadline:
            time.sleep(0.1)
        try:
            if self.loop.in_transaction:  # a step that failed: what it holds must not be committed now
                self._roll_back(True)
            self.loop.begin()
            for run in self.running.values():
                if run.final is not None:  # it ended before the shutdown: its own status
                    self._report(run.command, *run.final)
                    continue
                self._kill_group(run)
                self._report(run.command, "FAILED", f"worker {self.name} shut down while it ran")
            for command, message in self.not_started.values():
                self._report(command, "FAILED", message)
            self._commit()
        except KafkaException as exc:  # the scheduler's heartbeat timeout fails them instead
            log.error("worker: could not report the stopped tries: %s", exc)
        for key in self.running:  # their output is complete: ship the rest and the end chunks
            self.logs.finish(key)
        self.logs.stop(grace=5.0)
        self.running.clear()
        if self._preloader is not None:
            self._to_preload.put(None)
            self._preloader.join(timeout=5.0)
        if self.forks is not None:
            self.forks.close()
        self.control.close()
        self.definitions.close()
        self.loop.close()
        log.info("worker %s: stopped", self.name)

