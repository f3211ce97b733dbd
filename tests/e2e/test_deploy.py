"""deploy/ is run, not only written: the systemd units' and the compose services' command lines and
environments, read from the files, are run as plain processes against real parts — the session's
Kafka broker, PostgreSQL and moto's S3 server — and must carry a workflow to SUCCESS and stop on
SIGTERM within the time the unit (TimeoutStopSec) or the compose service (stop_grace_period) gives.

Only what points at the machines of a real deployment is replaced, by name: the Kafka, database and
S3 addresses, the paths (/opt/aiflow/bin is this virtual environment, /var/lib/aiflow a temporary
home, /etc/aiflow and /run/secrets temporary folders holding the same files), the listening ports (free
ones) and the topic replication (the test broker has one node); and each run gets a topic prefix of its
own. Everything else — the commands, their options, every other variable — is used as written. Docker
and systemd themselves are not run here (deploy/README.md): no image is built, no unit is started.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest
import yaml

from tests.conftest import REPO, PostgresCluster, free_port, new_database, processes_of, wait_until
from tests.s3server import S3Server, running_s3_server

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
BIN = Path(sys.executable).parent  # this virtual environment's bin: `aiflow` and `python`
WORKFLOW = REPO / "samples" / "quickstart" / "quickstart_workflow.py"
TOKEN = "deploy-test-token"
# A task that ignores SIGTERM: the worker's stop must wait out worker.stop_grace and SIGKILL it, which
# is what TimeoutStopSec and stop_grace_period must leave time for.
STUBBORN = """
import signal
import time

from aiflow import PythonOperator, Workflow


def hold() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("holding", flush=True)
    while True:
        time.sleep(1)


with Workflow(name="stubborn"):
    PythonOperator(name="hold", python_callable=hold)
"""
# What systemd gives a service of its own (no login shell, no user environment).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
AIFLOW_SERVICES = ("scheduler", "worker", "webserver")


# -- reading the files ------------------------------------------------------------------------------

@dataclass
class Unit:
    """A systemd unit file: section -> key -> every value given, in order (Environment= repeats)."""

    path: Path
    sections: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def all(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def get(self, key: str, section: str = "Service") -> str | None:
        values = self.all(key, section)
        return values[-1] if values else None


def read_unit(path: Path, instance: str = "") -> Unit:
    """The unit as systemd reads it: comments, backslash continuations, the %i specifier."""
    unit = Unit(path)
    section = ""
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        unit.sections.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip().replace("%i", instance))
    return unit


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (no shell: values as written)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and line[0] not in "#;":
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def unit_environment(unit: Unit, etc: Path) -> dict[str, str]:
    """Environment= first, then the EnvironmentFile= files, which override it (systemd's rule); a file
    named with a leading '-' may be missing. /etc/aiflow is `etc`."""
    env = dict(kv.split("=", 1) for kv in unit.all("Environment"))
    for name in unit.all("EnvironmentFile"):
        optional = name.startswith("-")
        path = Path(name.lstrip("-").replace("/etc/aiflow", str(etc)))
        assert path.is_file() or optional, f"{unit.path.name}: EnvironmentFile {name} is not in deploy/systemd"
        if path.is_file():
            env.update(read_env_file(path))
    return env


def exec_argv(line: str, env: dict[str, str]) -> list[str]:
    """An Exec*= line as systemd splits it: an unquoted `$VAR` word becomes the variable's words (none
    when unset), `${VAR}` one word; /opt/aiflow/bin is this virtual environment's bin."""
    assert line[0] not in "-@+!:", f"an Exec prefix this test does not know: {line}"
    argv: list[str] = []
    for word in shlex.split(line):
        if (m := re.fullmatch(r"\$(\w+)", word)):
            argv.extend(env.get(m.group(1), "").split())
        elif (m := re.fullmatch(r"\$\{(\w+)\}", word)):
            argv.append(env.get(m.group(1), ""))
        else:
            argv.append(word)
    return [argv[0].replace("/opt/aiflow/bin/", f"{BIN}/"), *argv[1:]]


def seconds(value: str) -> float:
    """`60`, `60s`, `1min 30s`, `1m30s` (systemd's and compose's durations)."""
    total = 0.0
    for number, unit_ in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|m|s|h)?", value):
        total += float(number) * {"ms": 0.001, "s": 1, "": 1, "m": 60, "min": 60, "h": 3600}[unit_]
    return total


def read_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `${VAR:?message}` against `shell`."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        current = shell.get(name)
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if op in (":?", "?"):
            assert current, f"compose would refuse: ${{{name}}} {arg}"
        return current or ""

    return re.sub(r"\$\{(\w+)(:-|-|:\?|\?)?([^}]*)\}", one, value)


@dataclass(frozen=True)
class Image:
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: str
    copies: dict[str, Path]  # a path in the image -> the repository's file it is a copy of


def read_dockerfile() -> Image:
    """The final stage's ENV, ENTRYPOINT, CMD, HEALTHCHECK CMD and COPY of repository files."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages = re.split(r"^FROM .*$", text, flags=re.M)
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    healthcheck = ""
    copies = {}
    for line in stages[-1].splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            env.update(dict(kv.split("=", 1) for kv in shlex.split(rest)))
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "HEALTHCHECK":
            healthcheck = rest.split(" CMD ", 1)[1]
        elif word == "COPY" and not rest.startswith("--from"):
            source, destination = rest.split()
            copies[destination] = REPO / source
    return Image(env, entrypoint, cmd, healthcheck, copies)


def aiflow_command(argv: list[str]) -> click.Command:
    """The aiflow command that `aiflow ARGV...` names, its options parsed by click as the CLI would
    (a mistake raises click's UsageError); nothing is run."""
    from aiflow.cli.main import cli

    command: click.Command = cli
    args = list(argv)
    parent = None
    while isinstance(command, click.Group):
        name = args.pop(0)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"`aiflow {' '.join(argv)}`: no command {name!r}"
        parent = click.Context(command, parent=parent, info_name=name)
        command = found
    command.make_context(command.name, args, parent=parent)
    return command


# -- the real parts ---------------------------------------------------------------------------------

@pytest.fixture
def s3() -> Iterator[S3Server]:
    """moto's S3 server, of this test alone; its one bucket is not the one deploy/ names, which the
    deployment's own steps create (compose) or the test creates as the operators would (systemd)."""
    with running_s3_server(bucket="unrelated") as server:
        yield server


def base_env(home: Path) -> dict[str, str]:
    """The environment a service manager starts from: no AIFLOW_* or AWS_* of the test's shell, and no
    ~/.aws of anyone's (HOME is the service user's, here an empty folder)."""
    user_home = home.parent / "user-home"
    user_home.mkdir(exist_ok=True)
    return {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": str(user_home), "AWS_EC2_METADATA_DISABLED": "true"}


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stop_timeout: float
    health_url: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=out,
                                            start_new_session=True)

    def tail(self) -> str:
        return f"--- {self.name}: {shlex.join(self.argv)}\n" + self.log.read_text(errors="replace")[-3000:]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def run_ok(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_workflow_through_the_webserver(services: list[Service], webserver_port: int, tmp_path: Path,
                                       s3: S3Server, bucket: str) -> dict[str, float]:
    """Wait for the services, upload the quickstart sample through the web server (client mode: the
    client holds only the URL and the token), run it to SUCCESS, then SIGTERM every service at once
    and time each one's exit — the worker while a try that ignores SIGTERM runs. Returns the seconds each
    took to stop."""
    def dead() -> str:
        return "\n".join(s.tail() for s in services if s.process is not None and s.process.poll() is not None)

    def up_or_dead(service: Service) -> bool:
        assert service.process is not None
        return answers(service.health_url) or service.process.poll() is not None

    for service in services:
        wait_until(lambda s=service: up_or_dead(s), 90,
                   lambda s=service: f"{s.name}: {s.health_url} does not answer\n{s.tail()}")
        assert service.process is not None and service.process.poll() is None, dead()

    client_dir = tmp_path / "client"
    client_dir.mkdir()
    shutil.copy(WORKFLOW, client_dir / WORKFLOW.name)
    client = {"PATH": f"{BIN}:{SYSTEMD_PATH}", "HOME": str(client_dir), "AIFLOW_HOME": str(client_dir / "home"),
              "AIFLOW_API_URL": f"http://127.0.0.1:{webserver_port}", "AIFLOW_API_TOKEN": TOKEN}
    started = time.monotonic()
    run_ok([str(BIN / "aiflow"), "workflow", "upload", WORKFLOW.name], client, client_dir)
    done = subprocess.run([str(BIN / "aiflow"), "workflow-execution", "start", "quickstart", "--wait", "--timeout",
                           "120", "-o", "json"], env=client, cwd=client_dir, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}\n" + \
        "\n".join(s.tail() for s in services)
    execution = json.loads(done.stdout)
    assert execution["status"] == "SUCCESS", execution
    tries = json.loads(run_ok([str(BIN / "aiflow"), "task-execution", "list", execution["id"], "-o", "json"],
                              client, client_dir))
    assert {t["task"]: t["status"] for t in tries} == {"hello": "SUCCESS", "world": "SUCCESS", "reply": "SUCCESS"}
    print(f"workflow uploaded and run to SUCCESS in {time.monotonic() - started:.1f} s")
    # A try that is running when the services are stopped, and will not stop on SIGTERM.
    (client_dir / "stubborn.py").write_text(STUBBORN)
    run_ok([str(BIN / "aiflow"), "workflow", "upload", "stubborn.py"], client, client_dir)
    held = json.loads(run_ok([str(BIN / "aiflow"), "workflow-execution", "start", "stubborn", "-o", "json"],
                             client, client_dir))["id"]

    def holding() -> bool:
        listed = run_ok([str(BIN / "aiflow"), "task-execution", "list", held, "-o", "json"], client, client_dir)
        return any(t["status"] == "RUNNING" for t in json.loads(listed))

    wait_until(holding, 60, "the stubborn task is not RUNNING")
    # The snapshots went through the S3 server, not a local folder.
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix="snapshots/")
    assert [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".zip")], listed

    stop_started = time.monotonic()
    for service in services:  # as systemctl stop / docker compose stop: SIGTERM to the main process
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
    took: dict[str, float] = {}
    while len(took) < len(services):
        now = time.monotonic() - stop_started
        for service in services:
            assert service.process is not None
            if service.name in took:
                continue
            if service.process.poll() is not None:
                took[service.name] = now
                assert service.process.returncode == 0, \
                    f"{service.name} exited {service.process.returncode} on SIGTERM\n{service.tail()}"
            elif now > service.stop_timeout:
                pytest.fail(f"{service.name} still runs {service.stop_timeout:.0f} s after SIGTERM\n{service.tail()}")
        time.sleep(0.1)
    grace = float(next(s for s in services if s.name == "worker").env.get("AIFLOW_WORKER_STOP_GRACE", "10"))
    assert took["worker"] >= grace - 1, f"the worker did not wait out the running try's stop grace: {took}"
    home = Path(services[0].env["AIFLOW_HOME"])
    assert not processes_of(home), f"processes left behind: {processes_of(home)}"
    print("stopped after SIGTERM in " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    return took


def kill_left(services: list[Service]) -> None:
    for service in services:
        if service.process is not None and service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()


# -- systemd ----------------------------------------------------------------------------------------

UNITS = {"scheduler": "aiflow-scheduler.service", "worker": "aiflow-worker@.service",
         "webserver": "aiflow-webserver.service"}


def test_systemd_units_are_hardened_foreground_services(tmp_path: Path) -> None:
    assert sorted(p.name for p in SYSTEMD.glob("*.service")) == sorted(UNITS.values())
    for file in UNITS.values():
        unit = read_unit(SYSTEMD / file, "default")
        assert "AIFLOW_HOME=/var/lib/aiflow" in unit.all("Environment"), file
        expected = {"Type": "exec", "User": "aiflow", "Restart": "on-failure", "NoNewPrivileges": "yes",
                    "ProtectSystem": "strict", "PrivateTmp": "yes", "KillMode": "mixed"}
        assert {k: unit.get(k) for k in expected} == expected, file
        assert "/var/lib/aiflow" in (unit.get("ReadWritePaths") or "").split(), file
        assert seconds(unit.get("RestartSec") or "0") > 0, file
        assert unit.get("WantedBy", "Install") == "multi-user.target", file
        argv = exec_argv(unit.get("ExecStart") or "", {})
        assert argv[0] == str(BIN / "aiflow"), f"{file}: ExecStart is not /opt/aiflow/bin/aiflow"
        assert not {"-d", "--daemon"} & set(argv), f"{file}: a service under systemd runs in the foreground"
        assert aiflow_command(argv[1:]).name == "start", file
    scheduler = read_unit(SYSTEMD / UNITS["scheduler"])
    assert exec_argv(scheduler.get("ExecStartPre") or "", {})[1:] == ["db", "upgrade"]
    # The worker's stop: its tries' grace (worker.stop_grace, 10 s by default) and their reports.
    from aiflow.config import Config

    grace = float(Config.load(home=tmp_path, environ={}).values["worker.stop_grace"])
    assert seconds(read_unit(SYSTEMD / UNITS["worker"]).get("TimeoutStopSec") or "0") >= grace + 20


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the units, with /opt/aiflow/bin pointing at this environment (it
    checks that ExecStart's program exists) and the worker template as the default queue's."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    for file in UNITS.values():
        target = tmp_path / file.replace("@.", "@default.")
        target.write_text((SYSTEMD / file).read_text().replace("/opt/aiflow/bin/", f"{BIN}/"))
    done = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and not done.stderr.strip(), done.stdout + done.stderr


def test_systemd_units_commands_run_a_workflow_and_stop_on_sigterm(
        kafka_bootstrap: str, postgres_server: PostgresCluster | str, s3: S3Server, tmp_path: Path) -> None:
    started = time.monotonic()
    home, etc, credentials = tmp_path / "var-lib-aiflow", tmp_path / "etc-aiflow", tmp_path / "credentials"
    for folder in (home, etc, credentials):
        folder.mkdir()
    for env_file in SYSTEMD.glob("*.env"):
        shutil.copy(env_file, etc / env_file.name)
    (etc / "webserver-token").write_text(TOKEN + "\n")
    shutil.copy(etc / "webserver-token", credentials / "webserver-token")  # LoadCredential=
    bucket = urlparse(read_env_file(etc / "aiflow.env")["AIFLOW_BLOB_URI"]).netloc
    s3.client().create_bucket(Bucket=bucket)  # the operators' bucket

    # What points at the machines of a deployment, by name: each must be in the files.
    infrastructure = {"AIFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap, "AIFLOW_DB_URI": new_database(postgres_server),
                      "AIFLOW_BLOB_S3_ENDPOINT_URL": s3.endpoint_url, "AIFLOW_TOPIC_REPLICATION_FACTOR": "1",
                      "AIFLOW_TOPIC_MIN_INSYNC_REPLICAS": "1", "AIFLOW_HOME": str(home)}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    webserver_port, ports = free_port(), {"scheduler": free_port(), "worker": free_port()}
    services = []
    for name, file in UNITS.items():
        unit = read_unit(SYSTEMD / file, "default")
        env = unit_environment(unit, etc)
        missing = set(infrastructure) - set(env)
        assert not missing, f"{file}: {missing} not set by the unit or its environment files"
        env = {**base_env(home), **env, **infrastructure, "AIFLOW_TOPIC_PREFIX": prefix,
               "AIFLOW_METRICS_SCHEDULER_PORT": str(ports["scheduler"]),
               "AIFLOW_METRICS_WORKER_PORT": str(ports["worker"])}
        env = {k: v.replace("%d", str(credentials)) for k, v in env.items()}
        if name == "webserver":
            assert env["AIFLOW_WEBSERVER_TOKEN_FILE"] == str(credentials / "webserver-token")
            assert unit.get("LoadCredential") == "webserver-token:/etc/aiflow/webserver-token"
        cwd = Path((unit.get("WorkingDirectory") or "/").replace("/var/lib/aiflow", str(home)))
        for pre in unit.all("ExecStartPre"):
            print(f"{file}: ExecStartPre {pre}: " + run_ok(exec_argv(pre, env), env, cwd).strip())
        argv = exec_argv(unit.get("ExecStart") or "", env)
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(webserver_port)
        health = f"http://127.0.0.1:{webserver_port}/healthz" if name == "webserver" else \
            f"http://127.0.0.1:{ports[name]}/metrics"
        services.append(Service(name, argv, env, cwd, seconds(unit.get("TimeoutStopSec") or "90"), health,
                                tmp_path / f"{name}.log"))
    # The instance names the queue; worker-default.env's WORKER_ARGS reach the command line.
    assert services[1].argv[-4:] == ["--queue", "default", "--slots", "4"], services[1].argv
    try:
        for service in services:
            service.start()
        run_workflow_through_the_webserver(services, webserver_port, tmp_path, s3, bucket)
    finally:
        kill_left(services)
    print(f"systemd units' commands: {time.monotonic() - started:.1f} s in all")


# -- docker compose ---------------------------------------------------------------------------------

def test_compose_file_is_a_whole_stack() -> None:
    compose = read_compose()
    services = compose["services"]
    assert set(services) == {"kafka", "postgres", "s3", "init", *AIFLOW_SERVICES}
    image = read_dockerfile()
    assert image.entrypoint == ["aiflow"] and image.healthcheck
    # The extras the image installs exist: pip only warns about an unknown one, and the image would lack
    # the PostgreSQL driver or boto3.
    extras = re.search(r"aiflow_kafka-\*\.whl\)\[([\w,]+)\]", DOCKERFILE.read_text())
    assert extras, "the Dockerfile installs the wheel with its extras"
    section = (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    declared = re.findall(r"^([\w-]+)\s*=", section, flags=re.M)
    assert set(extras.group(1).split(",")) <= set(declared), (extras.group(1), sorted(declared))
    for name in ("init", *AIFLOW_SERVICES):
        service = services[name]
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == REPO, name
        assert (REPO / service["build"]["dockerfile"]).resolve() == DOCKERFILE, name
        assert service["init"] is True, f"{name}: tini must reap what tasks leave behind"
        for source in image.copies.values():
            assert source.is_file(), source
        if name in AIFLOW_SERVICES:
            argv = [*image.entrypoint, *service.get("command", image.cmd)]
            assert not {"-d", "--daemon"} & set(argv), name
            assert aiflow_command(argv[1:]).name == "start", name
            assert seconds(service["stop_grace_period"]) > 0, name
            assert service["depends_on"] == {"init": {"condition": "service_completed_successfully"}}, name
            assert service["environment"]["AIFLOW_HEALTHCHECK_URL"].startswith("http://127.0.0.1:"), name
    # Every dependency exists, and one waited for as healthy has a health check.
    for name, service in services.items():
        for target, how in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[target] or target in AIFLOW_SERVICES, target
    assert set(services["init"]["depends_on"]) == {"kafka", "postgres", "s3"}
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "the worker scales (--scale worker=N)"
    assert services["webserver"]["environment"]["AIFLOW_WEBSERVER_TOKEN_FILE"] == \
        "/run/secrets/aiflow_webserver_token"
    assert compose["secrets"]["aiflow_webserver_token"] == {"environment": "AIFLOW_WEBSERVER_TOKEN"}
    # The aiflow services reach Kafka on the listener advertised to containers.
    kafka_env = services["kafka"]["environment"]
    bootstrap = services["scheduler"]["environment"]["AIFLOW_KAFKA_BOOTSTRAP"]
    assert f"//{bootstrap}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_services_commands_run_a_workflow_and_stop_on_sigterm(
        kafka_bootstrap: str, postgres_server: PostgresCluster | str, s3: S3Server, tmp_path: Path) -> None:
    started = time.monotonic()
    compose, image = read_compose(), read_dockerfile()
    services_yaml = compose["services"]
    home, secrets = tmp_path / "volume-aiflow-home", tmp_path / "run-secrets"
    home.mkdir()
    secrets.mkdir()
    shell = {"AIFLOW_WEBSERVER_TOKEN": TOKEN}  # what the user exports before `docker compose up`
    for name, secret in compose["secrets"].items():
        (secrets / name).write_text(shell[secret["environment"]])

    # The containers' names for the parts, and the ports: each must be in the file.
    bootstrap = services_yaml["scheduler"]["environment"]["AIFLOW_KAFKA_BOOTSTRAP"]
    endpoint = services_yaml["scheduler"]["environment"]["AIFLOW_BLOB_S3_ENDPOINT_URL"]
    database = new_database(postgres_server)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    ports = {"scheduler": free_port(), "worker": free_port(), "webserver": free_port()}

    def environment(name: str) -> dict[str, str]:
        service = services_yaml[name]
        env = {**base_env(home), **image.env,
               **{k: interpolate(str(v), shell) for k, v in service["environment"].items()}}
        assert env["AIFLOW_KAFKA_BOOTSTRAP"] == bootstrap and env["AIFLOW_BLOB_S3_ENDPOINT_URL"] == endpoint
        assert env["AIFLOW_DB_URI"].startswith("postgresql+psycopg://aiflow:aiflow@postgres:5432/"), env
        env.update(AIFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap, AIFLOW_BLOB_S3_ENDPOINT_URL=s3.endpoint_url,
                   AIFLOW_DB_URI=database, AIFLOW_TOPIC_PREFIX=prefix,
                   AIFLOW_METRICS_SCHEDULER_PORT=str(ports["scheduler"]),
                   AIFLOW_METRICS_WORKER_PORT=str(ports["worker"]))
        # The image's pip puts aiflow and python on its PATH; here they are this environment's.
        env["PATH"] = f"{BIN}:{env['PATH']}"
        replaced = {}
        for key, value in env.items():
            value = value.replace("/var/lib/aiflow", str(home)).replace("/run/secrets", str(secrets))
            if key == "AIFLOW_HEALTHCHECK_URL":
                value = re.sub(r":(\d+)/", f":{ports[name]}/", value)
            replaced[key] = value
        return replaced

    def argv_of(name: str) -> list[str]:
        service = services_yaml[name]
        argv = [*service.get("entrypoint", image.entrypoint), *service.get("command", image.cmd)]
        for inside, source in image.copies.items():
            argv = [word.replace(inside, str(source)) for word in argv]
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(ports[name])
        return argv

    # The init service, which the others wait for (service_completed_successfully).
    init_env = environment("init")
    bucket = urlparse(init_env["AIFLOW_BLOB_URI"]).netloc
    out = run_ok(argv_of("init"), init_env, home, timeout=180)
    assert f"bucket {bucket} created" in out, out
    print(f"init: {shlex.join(argv_of('init'))}\n{out.strip()}")

    services = []
    for name in AIFLOW_SERVICES:
        env = environment(name)
        services.append(Service(name, argv_of(name), env, home, seconds(services_yaml[name]["stop_grace_period"]),
                                env["AIFLOW_HEALTHCHECK_URL"], tmp_path / f"{name}.log"))
    try:
        for service in services:
            service.start()
        for service in services:  # the image's HEALTHCHECK, with the service's environment
            wait_until(lambda s=service: subprocess.run(["/bin/sh", "-c", image.healthcheck], env=s.env,
                                                        capture_output=True, timeout=10).returncode == 0,
                       90, lambda s=service: f"{s.name}: the HEALTHCHECK fails\n{s.tail()}")
        run_workflow_through_the_webserver(services, ports["webserver"], tmp_path, s3, bucket)
    finally:
        kill_left(services)
    print(f"compose services' commands: {time.monotonic() - started:.1f} s in all")

