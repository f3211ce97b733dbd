"""A real single-node Kafka broker for development, tests and the quick start.

No Docker engine is needed: the Apache Kafka broker jars are fetched once from Maven Central with
`mvn dependency:copy-dependencies` into a cache (or taken from `$KAFKA_HOME/libs`), a KRaft log
directory is formatted under `$AIFLOW_HOME/broker/`, and `kafka.Kafka` runs on loopback.

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
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiflow.config import Config
from aiflow.errors import BrokerError, KafkaUnavailable
from aiflow.kafka import clients
from aiflow.process import read_pid, stop_daemon

MIN_JAVA = 17

# Settings of the local broker; each says what it is for.
BROKER_SETTINGS = {
    # One node: every internal topic has a single replica.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
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


class LocalBroker:
    """The local broker of one aiflow home."""

    def __init__(self, config: Config) -> None:
        if not config.uses_local_broker:
            raise BrokerError(f"kafka.bootstrap names a cluster ({config.bootstrap}); "
                              "the local broker is for when it is empty")
        self.config = config
        self.dir = config.home / "broker"
        self.data_dir = self.dir / "data"
        self.pid_file = self.dir / "broker.pid"
        self.properties_file = self.dir / "server.properties"
        self.log_file = config.home / "logs" / "broker.log"
        self.port = int(config.values["broker.port"])
        self.controller_port = int(config.values["broker.controller_port"])
        self.version = str(config.values["broker.kafka_version"])

    # -- jars ------------------------------------------------------------------------------
    def libs_dir(self) -> Path:
        kafka_home = os.environ.get("KAFKA_HOME")
        if kafka_home:
            libs = Path(kafka_home) / "libs"
            if not libs.is_dir():
                raise BrokerError(f"KAFKA_HOME={kafka_home} has no libs/ folder: unset it to fetch Kafka from Maven")
            return libs
        return Path(self.config.values["broker.cache_dir"]) / self.version / "libs"

    def fetch(self) -> Path:
        """Fetch the broker's jars from Maven Central unless they are cached. Safe to call concurrently."""
        libs = self.libs_dir()
        if (libs / f"kafka_2.13-{self.version}.jar").exists() or os.environ.get("KAFKA_HOME"):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is needed once to fetch the Kafka broker from Maven Central: "
                              "install it (Debian: apt-get install maven), or set KAFKA_HOME to an "
                              "unpacked Apache Kafka distribution")
        libs.parent.mkdir(parents=True, exist_ok=True)
        with open(libs.parent / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (libs / f"kafka_2.13-{self.version}.jar").exists():
                return libs
            staging = libs.parent / f"libs.partial-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            pom = resources.files("aiflow.kafka") / "local" / "pom.xml"
            with resources.as_file(pom) as pom_path:
                print(f"Fetching Apache Kafka {self.version} from Maven Central into {libs} ...", file=sys.stderr)
                done = subprocess.run(
                    [mvn, "-q", "-B", "-f", str(pom_path), "dependency:copy-dependencies",
                     f"-Dkafka.version={self.version}", f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                    capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
                raise BrokerError(f"Maven could not fetch Kafka {self.version}:\n{tail}")
            shutil.rmtree(libs, ignore_errors=True)
            staging.rename(libs)
        return libs

    # -- files -----------------------------------------------------------------------------
    def write_properties(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            **BROKER_SETTINGS,
        }
        self.properties_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))

    def _java_command(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        log4j = resources.files("aiflow.kafka") / "local" / "log4j2.properties"
        return ["java", f"-Xmx{heap}", "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.libs_dir()}/*", main, *args]

    def format(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        done = subprocess.run(
            self._java_command("kafka.tools.StorageTool", "format", "--standalone",
                               "-t", _cluster_id(), "-c", str(self.properties_file)),
            capture_output=True, text=True)
        if done.returncode != 0:
            raise BrokerError(f"formatting {self.data_dir} failed: {(done.stdout + done.stderr).strip()[-500:]}")

    # -- process ---------------------------------------------------------------------------
    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def answers(self, timeout: float = 2.0) -> bool:
        try:
            clients.check_reachable(self.config, timeout=timeout)
            return True
        except KafkaUnavailable:
            return False

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.config.bootstrap,
                            pid is not None and self.answers(), self.log_file, self.data_dir)

    def start(self, timeout: float = 90.0) -> subprocess.Popen[bytes] | None:
        """Start the broker in the background and wait until it answers.

        Returns the process, or None when this home's broker was already running.
        """
        _check_java()
        if self.pid() is not None:
            if not self.answers(timeout=5.0):
                raise BrokerError(f"a broker process ({self.pid()}) runs but does not answer at "
                                  f"{self.config.bootstrap}; see {self.log_file}")
            return None
        if self.answers(timeout=1.0):
            raise BrokerError(f"something else already answers at {self.config.bootstrap}: stop it, or set "
                              "broker.port (AIFLOW_BROKER_PORT) to a free port")
        self.fetch()
        self.write_properties()
        self.format()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        heap = str(self.config.values["broker.heap"])
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                self._java_command("kafka.Kafka", str(self.properties_file), heap=heap),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker exited with code {process.returncode} while starting: "
                                  f"{_tail(self.log_file)}")
            if self.answers(timeout=1.0):
                return process
            time.sleep(0.3)
        self.stop()
        raise BrokerError(f"the broker did not answer at {self.config.bootstrap} within {timeout:.0f} s; "
                          f"see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop this home's broker: SIGTERM, then SIGKILL after `timeout`. False if none was running."""
        return stop_daemon(self.pid_file, timeout)


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
