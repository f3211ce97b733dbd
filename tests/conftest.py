"""Test harness: one real Kafka broker per test session, shared by every test that needs Kafka.

Where the broker comes from, in order: `AIFLOW_KAFKA_BOOTSTRAP` when it names a cluster; a
testcontainers Kafka when a Docker engine answers; otherwise the Maven-jar broker of
`aiflow.kafka.local_broker` on free loopback ports. If none can start, every Kafka test fails
loudly; none is skipped.

Each test gets its own topic prefix, so tests sharing the broker never see each other's records.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from aiflow.config import Config
from aiflow.kafka import topics
from aiflow.worker.zygote import SPARE_NAME, WARM_NAME

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Fault tests run the acceptance scale (1,000 tries, 500 tasks) in CI or with AIFLOW_FULL_SCALE=1,
# and a smaller stream of the same shape otherwise, to keep the local suite quick.
FULL_SCALE = IN_CI or os.environ.get("AIFLOW_FULL_SCALE", "") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(check: Any, timeout: float, what: Any) -> None:
    """Poll `check` until it is true; fail with `what` (or what it returns, if callable) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.3)


def processes_of(home: Path, marker: str = "") -> dict[int, int]:
    """pid -> parent pid of the live processes started with this aiflow home in their environment (and
    `marker` in their command line)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
            parent = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if f"AIFLOW_HOME={home}".encode() in environ.split(b"\0") and marker in cmdline and \
                process_alive(int(proc.name)):
            found[int(proc.name)] = parent
    return found


def task_processes(home: Path) -> list[int]:
    """The task processes of this home's workers: forks of a fork server (or of a warm one, itself a
    fork of the fork server but not a task; spares, forked ahead of a try, are not tasks yet either), or
    task runners."""
    servers = processes_of(home, "aiflow.worker.zygote")
    runners = processes_of(home, "aiflow.worker.runner")
    return sorted([pid for pid, parent in servers.items() if parent in servers and not _is_server(pid)]
                  + list(runners))


def _is_server(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes().strip() in (WARM_NAME, SPARE_NAME)
    except OSError:
        return False


def process_env(tmp_path: Path, bootstrap: str, **extra: str) -> tuple[dict[str, str], str]:
    """The environment of aiflow processes started by a fault test: a home under `tmp_path`, a topic
    prefix of its own (returned too), and the short session and transaction timeouts of failover."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")},
           "AIFLOW_HOME": str(tmp_path / "home"), "AIFLOW_KAFKA_BOOTSTRAP": bootstrap, "AIFLOW_TOPIC_PREFIX": prefix,
           "AIFLOW_KAFKA_SESSION_TIMEOUT_MS": "3000", "AIFLOW_KAFKA_TRANSACTION_TIMEOUT_MS": "5000",
           # No metrics endpoints: several schedulers and workers run side by side here.
           "AIFLOW_METRICS_SCHEDULER_PORT": "0", "AIFLOW_METRICS_WORKER_PORT": "0", **extra}
    return env, prefix


def fault_setup(tmp_path: Path, bootstrap: str, name: str, source: str, **extra: str) -> tuple[dict[str, str], Config]:
    """A fault test's start: the environment of its aiflow processes (`process_env`), its configuration,
    its topics, and the workflow file `<name>.py` with `source` uploaded."""
    from aiflow import ops

    env, prefix = process_env(tmp_path, bootstrap, **extra)
    config = make_config(tmp_path / "home", bootstrap, AIFLOW_TOPIC_PREFIX=prefix)
    topics.create_topics(config)
    flow = tmp_path / f"{name}.py"
    flow.write_text(source)
    ops.upload_workflows(flow, config=config)
    return env, config


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process still running, then wait up to a minute for each before killing it."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def start_aiflow(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`aiflow ARGS` as a process of its own (its own session), output appended to `log`."""
    import sys

    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "aiflow.cli", *args], env=env, stdout=out, stderr=out,
                                start_new_session=True)


def broker_cache_dir() -> str:
    """Where the broker's jars are: the one place every start of the local broker uses (the user's
    cache, or AIFLOW_BROKER_CACHE_DIR), so a test session fetches nothing `aiflow` has fetched."""
    from aiflow.kafka.local_broker import default_cache_dir

    return os.environ.get("AIFLOW_BROKER_CACHE_DIR") or str(default_cache_dir())


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def _say(request: pytest.FixtureRequest, text: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(text)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("AIFLOW_KAFKA_BOOTSTRAP")
    if external:
        _say(request, f"Kafka for the test session: the cluster at {external} (AIFLOW_KAFKA_BOOTSTRAP)")
        yield external
        return
    if _docker_engine():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            bootstrap = container.get_bootstrap_server()
            _say(request, f"Kafka for the test session: testcontainers broker at {bootstrap}")
            yield bootstrap
        return

    from aiflow.errors import BrokerError
    from aiflow.kafka.local_broker import LocalBroker

    # The first download of the broker's jars shows its progress on the terminal, not in captured output.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        LocalBroker(Config.load(home=tmp_path_factory.mktemp("fetch-home"),
                                environ={"AIFLOW_BROKER_CACHE_DIR": broker_cache_dir()})).fetch()
    for attempt in (1, 2):  # free_port() can race with another process: one more try with new ports
        home = tmp_path_factory.mktemp("broker-home")
        config = Config.load(home=home, environ={
            "AIFLOW_BROKER_PORT": str(free_port()),
            "AIFLOW_BROKER_CONTROLLER_PORT": str(free_port()),
            "AIFLOW_BROKER_CACHE_DIR": broker_cache_dir(),
        })
        broker = LocalBroker(config)
        try:
            broker.start()
            break
        except BrokerError as exc:
            if attempt == 2:
                raise
            _say(request, f"the local broker did not start ({exc}); trying again")
    _say(request, f"Kafka for the test session: local broker started at {config.bootstrap} "
                  f"(pid {broker.pid()}, log {broker.log_file})")
    try:
        yield config.bootstrap
    finally:
        broker.stop()


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free loopback ports."""
    for _ in range(50):
        base = free_port()
        if base + size >= 65536:
            continue
        try:
            sockets = []
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError(f"no {size} consecutive free ports")


@contextmanager
def own_broker(home: Path, nodes: int = 1, start: bool = True) -> Iterator[Any]:
    """A local broker (or cluster of `nodes`) of a test's own, which it may kill and restart: the
    session's broker is shared by every test and must stay up."""
    from aiflow.kafka.local_broker import LocalBroker

    base = free_port_block(2 * nodes)
    config = Config.load(home=home, environ={
        "AIFLOW_BROKER_PORT": str(base), "AIFLOW_BROKER_CONTROLLER_PORT": str(base + 1),
        "AIFLOW_BROKER_NODES": str(nodes), "AIFLOW_BROKER_CACHE_DIR": broker_cache_dir()})
    broker = LocalBroker(config)
    if start:
        broker.start(timeout=180)
    try:
        yield broker
    finally:
        broker.stop(timeout=5)


def make_config(home: Path, bootstrap: str, **env: str) -> Config:
    environ = {"AIFLOW_KAFKA_BOOTSTRAP": bootstrap, "AIFLOW_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}", **env}
    return Config.load(home=home, environ=environ)


@pytest.fixture
def kafka_config(kafka_bootstrap: str, tmp_path: Path) -> Config:
    """A configuration of a fresh aiflow home whose topics (with a prefix of its own) exist."""
    config = make_config(tmp_path / "home", kafka_bootstrap)
    topics.create_topics(config)
    return config


def read_topic(config: Config, role: str, timeout: float = 20.0) -> list[Any]:
    """Every committed record of one of aiflow's topics, as confluent-kafka Messages."""
    from confluent_kafka import TopicPartition

    from aiflow.kafka import clients

    consumer = clients.consumer(config, role="test", settings={"enable.partition.eof": True})
    topic = topics.name(config, role)
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    records, eof = [], set()
    deadline = time.monotonic() + timeout
    while len(eof) < len(parts) and time.monotonic() < deadline:
        for msg in consumer.consume(100, timeout=0.5):
            if msg.error():
                eof.add(msg.partition())
            else:
                records.append(msg)
    consumer.close()
    return records


def produce_raw(config: Config, records: list[tuple[str, bytes | None, bytes | None]],
                partition: int | None = None) -> list[str]:
    """Write (topic role, key, value) records as any Kafka producer would; returns where each landed
    (topic/partition/offset, as a dead letter's source header names it)."""
    from aiflow.kafka import clients

    producer = clients.producer(config, role="test")
    landed: dict[int, str] = {}
    for index, (role, key, value) in enumerate(records):
        def delivered(err: Any, msg: Any, index: int = index) -> None:
            assert err is None, err
            landed[index] = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
        extra = {} if partition is None else {"partition": partition}
        producer.produce(topics.name(config, role), key=key, value=value, on_delivery=delivered, **extra)
    assert producer.flush(30) == 0
    return [landed[i] for i in range(len(records))]


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresCluster:
    """A throw-away PostgreSQL cluster of Debian's `postgresql` package on a free loopback port, which
    a test may stop and start again (not under pytest's temporary folder: that one is private to root,
    and PostgreSQL runs as postgres)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="aiflow-test-postgres-"))
        self.data, self.port = self.base / "data", free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.base, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.as_user, str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "aiflow"],
                       check=True, capture_output=True)
        self.uri = f"postgresql+psycopg://aiflow@127.0.0.1:{self.port}"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args],
                       check=True, capture_output=True)

    def start(self) -> None:
        self._ctl("-w", "-l", str(self.base / "log"), "-o",
                  f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-m", mode, "stop")

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URI."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.uri.replace("postgresql+psycopg", "postgresql") + "/postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.uri}/{name}"

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)


def postgres_cluster() -> PostgresCluster:
    """A new cluster (not started), or the test fails (in CI) or is skipped without PostgreSQL."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        if IN_CI:
            pytest.fail("PostgreSQL is not installed; scripts/test.sh installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return PostgresCluster(bin_dir)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresCluster | str]:
    """A PostgreSQL server for the session: `AIFLOW_TEST_POSTGRES_URI` (a server URI without a database),
    or a throw-away cluster."""
    external = os.environ.get("AIFLOW_TEST_POSTGRES_URI")
    if external:
        yield external.rstrip("/")
        return
    cluster = postgres_cluster()
    cluster.start()
    _say(request, f"PostgreSQL for the test session: started on 127.0.0.1:{cluster.port}")
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: SQLite in a temporary folder, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/aiflow.db"
    return new_database(request.getfixturevalue("postgres_server"))


def new_database(server: PostgresCluster | str) -> str:
    """The URI of a new, empty database on the session's PostgreSQL (ours, or one named by URI)."""
    if isinstance(server, PostgresCluster):
        return server.create_database()
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)
