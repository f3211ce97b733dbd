"""A real Kafka broker for development, tests and the quick start: one KRaft node, or a cluster of
several on loopback (`broker.nodes`).

No Docker engine is needed: the Apache Kafka broker jars are fetched once per machine from Maven
Central with `mvn dependency:copy-dependencies` into the user's cache (`default_cache_dir()`, or
`broker.cache_dir`; or taken from `$KAFKA_HOME/libs`), showing the download's progress, a KRaft log
directory is formatted under `$AIFLOW_HOME/broker/`, and `kafka.Kafka` runs on loopback (or on the
address `broker.host` names, which it then advertises, for clients on other machines).

The broker's settings lower the timeouts that bound failover, so that a killed scheduler or worker
is replaced in seconds rather than the minute the broker's defaults allow (see docs/operations.md
for what to ask of a production cluster's operators).
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException

from aiflow.config import Config
from aiflow.errors import BrokerError, KafkaUnavailable
from aiflow.kafka import clients
from aiflow.process import alive, private_home, read_pid, stop_daemon

MIN_JAVA = 17
# The level of the broker's request logger, read by local/log4j2.properties (WARN when unset): DEBUG logs
# every request it serves with its times (benchmarks/run.py --request-log).
REQUEST_LOG_LEVEL_ENV = "AIFLOW_BROKER_REQUEST_LOG_LEVEL"

# Settings of the local broker; each says what it is for.
BROKER_SETTINGS = {
    # Fewer internal partitions: a faster start on two cores, plenty for one machine.
    "offsets.topic.num.partitions": "6",
    "transaction.state.log.num.partitions": "6",
    # A new group gets its partitions at once instead of after 3 s.
    "group.initial.rebalance.delay.ms": "0",
    # Failover: allow client session timeouts down to 1 s (the broker's floor is 6 s by default),
    # for classic groups and for KIP-848 consumer groups (whose floor is 45 s by default).
    "group.min.session.timeout.ms": "1000",
    "group.consumer.min.session.timeout.ms": "1000",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.min.heartbeat.interval.ms": "500",
    "group.consumer.heartbeat.interval.ms": "1000",
    # A killed producer's open transaction is aborted within a second of its timeout (default sweep 10 s).
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    # Topics are created by `aiflow topics create` with their policies, never by a typo.
    "auto.create.topics.enable": "false",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "log.cleaner.threads": "1",
}


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    answers: bool
    log_file: Path
    data_dir: Path
    nodes: int = 1


def _java_major() -> int:
    java = shutil.which("java")
    if java is None:
        raise BrokerError(f"Java {MIN_JAVA} or newer is needed to run the local Kafka broker and none is on PATH: "
                          "install a JDK (Debian: apt-get install openjdk-17-jre-headless), "
                          "or point AIFLOW_KAFKA_BOOTSTRAP at an existing cluster")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise BrokerError(f"cannot tell the version of {java}: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@dataclass(frozen=True)
class Node:
    """One KRaft node (broker and controller) of the local cluster."""

    id: int
    port: int
    controller_port: int
    dir: Path  # its server.properties, pid file and data/
    log_file: Path

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"


def replication_settings(nodes: int) -> dict[str, str]:
    """Replication of Kafka's internal topics and of new topics: 3 replicas and 2 in sync on three
    nodes or more (a write survives the loss of one), else one replica per node."""
    factor, isr = str(min(3, nodes)), "2" if nodes >= 3 else "1"
    return {"offsets.topic.replication.factor": factor, "transaction.state.log.replication.factor": factor,
            "transaction.state.log.min.isr": isr, "share.coordinator.state.topic.replication.factor": factor,
            "share.coordinator.state.topic.min.isr": isr, "default.replication.factor": factor,
            "min.insync.replicas": isr}


class LocalBroker:
    """The local broker of one aiflow home: one KRaft node, or `broker.nodes` of them as a cluster
    (node i on ports `broker.port` + 2(i-1) and `broker.controller_port` + 2(i-1))."""

    def __init__(self, config: Config) -> None:
        if not config.uses_local_broker:
            raise BrokerError(f"kafka.bootstrap names a cluster ({config.bootstrap}); "
                              "the local broker is for when it is empty")
        self.config = config
        self.dir = config.home / "broker"
        port, controller_port = int(config.values["broker.port"]), int(config.values["broker.controller_port"])
        count = int(config.values["broker.nodes"])
        # Node 1 keeps the single broker's places, so a one-node home made before clusters keeps its data.
        self.nodes = [Node(i, port + 2 * (i - 1), controller_port + 2 * (i - 1),
                           self.dir if i == 1 else self.dir / f"node-{i}",
                           config.home / "logs" / ("broker.log" if i == 1 else f"broker-{i}.log"))
                      for i in range(1, count + 1)]
        self.data_dir = self.nodes[0].data_dir
        self.pid_file = self.nodes[0].pid_file
        self.log_file = self.nodes[0].log_file
        self.version = str(config.values["broker.kafka_version"])
        # Where every node listens and what it advertises: loopback, or this machine's address (broker.host).
        self.host = str(config.values["broker.host"])
        self.processes: dict[int, subprocess.Popen[bytes]] = {}  # the nodes this object started

    def node(self, node_id: int) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise BrokerError(f"the local cluster has no node {node_id} (broker.nodes = {len(self.nodes)})")

    # -- jars ------------------------------------------------------------------------------
    def libs_dir(self) -> Path:
        kafka_home = os.environ.get("KAFKA_HOME")
        if kafka_home:
            libs = Path(kafka_home) / "libs"
            if not libs.is_dir():
                raise BrokerError(f"KAFKA_HOME={kafka_home} has no libs/ folder: unset it to fetch Kafka from Maven")
            return libs
        configured = str(self.config.values["broker.cache_dir"])
        return (Path(configured).expanduser() if configured else default_cache_dir()) / self.version / "libs"

    def fetched(self) -> bool:
        """Whether the broker's jars are here (or come from KAFKA_HOME): starting it fetches nothing."""
        return bool(os.environ.get("KAFKA_HOME")) or (self.libs_dir() / f"kafka_2.13-{self.version}.jar").exists()

    def fetch(self) -> Path:
        """Fetch the broker's jars from Maven Central unless they are cached, showing the download's
        progress on stderr. Safe to call concurrently: one process fetches, the others wait for it."""
        libs = self.libs_dir()
        if self.fetched():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is needed once to fetch the Kafka broker from Maven Central: "
                              "install it (Debian: apt-get install maven), or set KAFKA_HOME to an "
                              "unpacked Apache Kafka distribution")
        libs.parent.mkdir(parents=True, exist_ok=True)
        with open(libs.parent / ".fetch.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"Waiting for another process that fetches Apache Kafka {self.version} into {libs} ...",
                      file=sys.stderr, flush=True)
                fcntl.flock(lock, fcntl.LOCK_EX)
            if self.fetched():
                return libs
            staging = libs.parent / f"libs.partial-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            pom = resources.files("aiflow.kafka") / "local" / "pom.xml"
            progress = FetchProgress(self.version, libs)
            with resources.as_file(pom) as pom_path:
                # Batch mode without -q: one "Downloaded from central: URL (SIZE at RATE)" line per file,
                # which is what the progress counts.
                process = subprocess.Popen(
                    [mvn, "-B", "-f", str(pom_path), "dependency:copy-dependencies",
                     f"-Dkafka.version={self.version}", f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
                assert process.stdout is not None
                output = []
                for line in process.stdout:
                    output.append(line)
                    progress.line(line)
                process.wait()
            if process.returncode != 0:
                progress.end(None)
                shutil.rmtree(staging, ignore_errors=True)
                errors = [line.rstrip() for line in output if line.startswith("[ERROR]")] or output
                tail = "\n".join(line.rstrip() for line in errors[-8:])
                raise BrokerError(f"Maven could not fetch Kafka {self.version}:\n{tail}")
            shutil.rmtree(libs, ignore_errors=True)
            staging.rename(libs)
            progress.end(len(list(libs.glob("*.jar"))))
        return libs

    # -- files -----------------------------------------------------------------------------
    def write_properties(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        host = self.host
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(node.id),
            "listeners": f"PLAINTEXT://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(node.data_dir),
            **BROKER_SETTINGS,
            **replication_settings(len(self.nodes)),
        }
        if len(self.nodes) == 1:  # a quorum of one, formatted with --standalone
            lines["controller.quorum.bootstrap.servers"] = f"{host}:{node.controller_port}"
        else:  # a fixed quorum of every node
            lines["controller.quorum.voters"] = ",".join(f"{n.id}@{host}:{n.controller_port}" for n in self.nodes)
        node.properties_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))

    def _java_command(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        log4j = resources.files("aiflow.kafka") / "local" / "log4j2.properties"
        return ["java", f"-Xmx{heap}", "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.libs_dir()}/*", main, *args]

    def _cluster_id(self) -> str:
        """The cluster's id, the same for every node and kept across restarts."""
        path = self.dir / "cluster.id"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            path.write_text(_cluster_id())
        return path.read_text().strip()

    def _check_layout(self) -> None:
        """A home's data was formatted for a number of nodes (one node's quorum differs from a
        cluster's): refuse another number rather than start nodes that cannot agree."""
        marker = self.dir / "nodes"
        formatted = (self.nodes[0].data_dir / "meta.properties").exists()
        if formatted:
            before = int(marker.read_text()) if marker.exists() else 1
            if before != len(self.nodes):
                raise BrokerError(f"the local broker of {self.config.home} was made with {before} node(s), "
                                  f"broker.nodes is now {len(self.nodes)}: use another AIFLOW_HOME, or stop the "
                                  f"broker and delete {self.dir} (its data goes with it)")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(len(self.nodes)))

    def format(self, node: Node) -> None:
        if (node.data_dir / "meta.properties").exists():
            return
        standalone = ["--standalone"] if len(self.nodes) == 1 else []
        done = subprocess.run(
            # `--cluster-id=ID` in one word: a random id may begin with '-', which argparse takes for an option.
            self._java_command("kafka.tools.StorageTool", "format", *standalone,
                               f"--cluster-id={self._cluster_id()}", "-c", str(node.properties_file)),
            capture_output=True, text=True)
        if done.returncode != 0:
            raise BrokerError(f"formatting {node.data_dir} failed: {(done.stdout + done.stderr).strip()[-500:]}")

    # -- process ---------------------------------------------------------------------------
    def pid(self) -> int | None:
        return self.node_pid(1)

    def node_pid(self, node_id: int) -> int | None:
        return read_pid(self.node(node_id).pid_file)

    def answers(self, timeout: float = 2.0) -> bool:
        try:
            clients.check_reachable(self.config, timeout=timeout)
            return True
        except KafkaUnavailable:
            return False

    def registered(self, timeout: float = 2.0) -> set[int]:
        """The ids of the nodes the cluster's metadata lists as brokers now."""
        try:
            metadata = clients.probe(self.config).list_topics(timeout=timeout)
        except KafkaException:
            return set()
        return set(metadata.brokers)

    def status(self) -> BrokerStatus:
        pids = [self.node_pid(n.id) for n in self.nodes]
        running = all(p is not None for p in pids)
        return BrokerStatus(running, pids[0], self.config.bootstrap, running and self.answers(), self.log_file,
                            self.data_dir, len(self.nodes))

    def start(self, timeout: float = 90.0) -> bool:
        """Start every node that is not running and wait until all of them serve. False when every
        node of this home was running already."""
        _check_java()
        private_home(self.config.home)
        running = [n for n in self.nodes if self.node_pid(n.id) is not None]
        if len(running) == len(self.nodes):
            if not self.answers(timeout=5.0):
                raise BrokerError(f"the broker processes run but do not answer at {self.config.bootstrap}; "
                                  f"see {self.log_file}")
            return False
        if not running and self.answers(timeout=1.0):
            raise BrokerError(f"something else already answers at {self.config.bootstrap}: stop it, or set "
                              "broker.port (AIFLOW_BROKER_PORT) to a free port")
        self.fetch()
        self._check_layout()
        launched = set()
        for node in self.nodes:
            if node not in running:
                self._launch(node)
                launched.add(node.id)
        self._wait_for({n.id for n in self.nodes}, launched, timeout)
        return True

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one node (of a cluster whose other nodes may be running) and wait until it serves."""
        self.start_nodes([node_id], timeout)

    def start_nodes(self, node_ids: list[int], timeout: float = 90.0) -> None:
        """Start these nodes (all at once: a cluster that lost its quorum needs several back to serve)
        and wait until they serve. A node already running under someone else (`aiflow broker start`)
        is left to them."""
        launched = set()
        for node_id in node_ids:
            if self.node_pid(node_id) is None:
                self._launch(self.node(node_id))
                launched.add(node_id)
            else:
                self.processes.pop(node_id, None)
        self._wait_for(set(node_ids), launched, timeout)

    def _launch(self, node: Node) -> None:
        self.write_properties(node)
        self.format(node)
        node.log_file.parent.mkdir(parents=True, exist_ok=True)
        heap = str(self.config.values["broker.heap"])
        with open(node.log_file, "ab") as log:
            process = subprocess.Popen(
                self._java_command("kafka.Kafka", str(node.properties_file), heap=heap),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        node.pid_file.write_text(str(process.pid))
        self.processes[node.id] = process

    def _wait_for(self, node_ids: set[int], launched: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node_id in node_ids:
                process = self.processes.get(node_id)
                if process is not None and process.poll() is not None:
                    node = self.node(node_id)
                    node.pid_file.unlink(missing_ok=True)
                    raise BrokerError(f"broker node {node_id} exited with code {process.returncode} while starting: "
                                      f"{_tail(node.log_file)}")
            if self.answers(timeout=1.0) and (len(self.nodes) == 1 or node_ids <= self.registered()):
                return
            time.sleep(0.3)
        for node_id in launched:  # only what this call started: the nodes that serve go on
            self.stop_node(node_id, timeout=5)
        raise BrokerError(f"the broker did not answer at {self.config.bootstrap} within {timeout:.0f} s; "
                          f"see {self.log_file}")

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        pid = self.node_pid(node_id)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            process = self.processes.get(node_id)
            if process is not None:
                process.wait()
            else:
                while alive(pid):
                    time.sleep(0.05)
        self.node(node_id).pid_file.unlink(missing_ok=True)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> bool:
        """Stop one node: SIGTERM (a controlled shutdown), then SIGKILL after `timeout`."""
        return stop_daemon(self.node(node_id).pid_file, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node of this home. False if none was running."""
        stopped = [self.stop_node(n.id, timeout) for n in reversed(self.nodes)]
        return any(stopped)


def fetch_jars(config: Config | None = None) -> None:
    """Fetch the local broker's jars now, in the foreground, if this configuration (by default the
    environment's) uses a local broker and they are not cached: for a command that starts the broker
    in the background (`standalone -d`), so that the first download's progress shows on the terminal
    rather than in a log file."""
    config = config if config is not None else Config.load()
    if config.uses_local_broker:
        LocalBroker(config).fetch()


def default_cache_dir() -> Path:
    """Where the broker's jars are kept unless `broker.cache_dir` says otherwise: the user's cache,
    the same for every aiflow home, test session and script, so Kafka is fetched once per machine."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "aiflow" / "kafka"


class FetchProgress:
    """The download's progress on stderr, from Maven's "Downloaded from <repo>: URL (SIZE at RATE)"
    lines: one line rewritten in place on a terminal, a line every few seconds in a log file."""

    EVERY = 5.0  # seconds between lines when stderr is not a terminal

    def __init__(self, version: str, libs: Path) -> None:
        self.version, self.libs = version, libs
        self.files, self.bytes = 0, 0.0
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        print(f"Downloading Apache Kafka {version} from Maven Central into {libs} (once per machine) ...",
              file=sys.stderr, flush=True)

    def line(self, text: str) -> None:
        match = _DOWNLOADED.search(text)
        if match is None:
            return
        self.files += 1
        self.bytes += float(match.group(1)) * _UNITS[match.group(2)]
        now = time.monotonic()
        if self.tty:
            print(f"\r  {self.done()}", end="", file=sys.stderr, flush=True)
        elif now - self.last >= self.EVERY:
            print(f"  {self.done()} so far", file=sys.stderr, flush=True)
            self.last = now

    def done(self) -> str:
        return f"{self.files} file{'s' if self.files != 1 else ''}, {self.bytes / 1e6:.1f} MB"

    def end(self, jars: int | None) -> None:
        if self.tty and self.files:
            print(file=sys.stderr)
        if jars is not None:
            downloaded = f"downloaded {self.done()}; " if self.files else ""
            print(f"Apache Kafka {self.version}: {downloaded}{jars} jars in {self.libs}", file=sys.stderr, flush=True)


_DOWNLOADED = re.compile(r"^(?:\[INFO\] )?Downloaded from [^:]+: \S+ \((\d+(?:\.\d+)?) (B|kB|KB|MB|GB)")
_UNITS = {"B": 1.0, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def _cluster_id() -> str:
    """A random Kafka cluster id: 16 bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _check_java() -> None:
    major = _java_major()
    if major < MIN_JAVA:
        raise BrokerError(f"Kafka's broker needs Java {MIN_JAVA} or newer; `java` on PATH is Java {major}")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
