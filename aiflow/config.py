"""Configuration: `$AIFLOW_HOME/aiflow.yaml`, every key overridable by an environment variable.

Precedence, highest first: environment variable, `aiflow.yaml`, built-in default. Each key is declared
once in `KEYS` with its type, default, environment variable and meaning; `aiflow config list` prints
that table. Any librdkafka property can be passed under `kafka.properties` in the file, or as
`AIFLOW_KAFKA_PROPERTY_<NAME>` where NAME is the property with dots written as underscores
(`AIFLOW_KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`).

String values may use `{home}` (the aiflow home) and `${VAR}` (an environment variable), so secrets
need not be written in the file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiflow.errors import ConfigError

CONFIG_FILE = "aiflow.yaml"
KAFKA_PROPERTY_ENV_PREFIX = "AIFLOW_KAFKA_PROPERTY_"


@dataclass(frozen=True)
class Key:
    name: str
    type: type
    default: Any
    env: str
    doc: str


KEYS: tuple[Key, ...] = (
    Key("kafka.bootstrap", str, "", "AIFLOW_KAFKA_BOOTSTRAP",
        "Kafka bootstrap servers; empty means the local broker at <broker.host>:<broker.port> (every node's "
        "port with broker.nodes > 1)"),
    Key("kafka.session_timeout_ms", int, 6000, "AIFLOW_KAFKA_SESSION_TIMEOUT_MS",
        "consumer-group session timeout: how long a killed member holds its partitions"),
    Key("kafka.transaction_timeout_ms", int, 10000, "AIFLOW_KAFKA_TRANSACTION_TIMEOUT_MS",
        "how long a killed producer's open transaction blocks read_committed readers"),
    Key("topics.prefix", str, "aiflow", "AIFLOW_TOPIC_PREFIX", "prefix of every aiflow topic"),
    Key("topics.partitions", int, 3, "AIFLOW_TOPIC_PARTITIONS",
        "partitions of the events, inbox, tasks and state topics"),
    Key("topics.replication_factor", int, 1, "AIFLOW_TOPIC_REPLICATION_FACTOR",
        "replication factor of every topic (1 on the local broker, 3 in production)"),
    Key("topics.min_insync_replicas", int, 1, "AIFLOW_TOPIC_MIN_INSYNC_REPLICAS",
        "replicas that must have a record before a write succeeds (2 with 3 replicas: one may be lost)"),
    Key("topics.events_retention_ms", int, -1, "AIFLOW_TOPIC_EVENTS_RETENTION_MS",
        "retention of the events topic; -1 keeps the whole history"),
    Key("topics.retention_ms", int, 7 * 24 * 3600 * 1000, "AIFLOW_TOPIC_RETENTION_MS",
        "retention of the inbox, tasks and control topics"),
    Key("topics.dlq_retention_ms", int, 30 * 24 * 3600 * 1000, "AIFLOW_TOPIC_DLQ_RETENTION_MS",
        "retention of the dead-letter topic"),
    Key("topics.logs_retention_ms", int, 7 * 24 * 3600 * 1000, "AIFLOW_TOPIC_LOGS_RETENTION_MS",
        "retention of the logs topic (the output of task tries, readable from any machine)"),
    Key("db.uri", str, "sqlite:///{home}/aiflow.db", "AIFLOW_DB_URI", "SQLAlchemy URI of the metadata store"),
    Key("blob.uri", str, "file://{home}/blobs", "AIFLOW_BLOB_URI",
        "where workflow snapshots are stored (file://<folder>, or s3://<bucket>/<prefix> with aiflow-kafka[s3])"),
    Key("blob.s3_endpoint_url", str, "", "AIFLOW_BLOB_S3_ENDPOINT_URL",
        "endpoint of an S3-compatible store for s3:// blobs (empty: AWS, or AWS_ENDPOINT_URL); credentials come "
        "only from the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role)"),
    Key("blob.s3_region", str, "", "AIFLOW_BLOB_S3_REGION",
        "region of the s3:// blob bucket (empty: boto3's own resolution, AWS_REGION or ~/.aws/config)"),
    Key("namespace", str, "default", "AIFLOW_NAMESPACE", "namespace used when none is given"),
    Key("scheduler.heartbeat_timeout", int, 30, "AIFLOW_HEARTBEAT_TIMEOUT",
        "seconds without a heartbeat after which a running try is FAILED (time in which no worker at all "
        "is heard, as in a Kafka outage, does not count)"),
    Key("scheduler.stop_timeout", int, 30, "AIFLOW_STOP_TIMEOUT",
        "seconds a STOP may go unconfirmed before it is sent again as a KILL"),
    Key("scheduler.queue_timeout", int, 600, "AIFLOW_QUEUE_TIMEOUT",
        "seconds a try may wait for a worker to take its START before it is FAILED (and retried if it may be)"),
    Key("scheduler.snapshot_cache_retention", int, 7 * 24 * 3600, "AIFLOW_SCHEDULER_SNAPSHOT_CACHE_RETENTION",
        "seconds an unpacked snapshot of the scheduler's cache may go unused before it is removed (0 keeps them)"),
    Key("scheduler.condition_timeout", int, 5, "AIFLOW_CONDITION_TIMEOUT",
        "seconds a condition of the user's own may take to answer (in its snapshot's process) before it is "
        "treated as not met and its process is started again"),
    Key("workflows.load_timeout", int, 30, "AIFLOW_WORKFLOWS_LOAD_TIMEOUT",
        "seconds a workflow file may take to load, at upload and in the scheduler (in a process of its own); "
        "a file that takes longer is refused at upload and fails its execution in the scheduler"),
    Key("workflows.load_memory_mb", int, 4096, "AIFLOW_WORKFLOWS_LOAD_MEMORY_MB",
        "address-space cap in MB of the process that loads a workflow file (0: none)"),
    Key("webserver.host", str, "127.0.0.1", "AIFLOW_WEBSERVER_HOST",
        "address the web server (REST API) listens on; off loopback it needs a token"),
    Key("webserver.port", int, 8080, "AIFLOW_WEBSERVER_PORT", "port of the web server"),
    Key("webserver.token_file", str, "", "AIFLOW_WEBSERVER_TOKEN_FILE",
        "a file holding the bearer token the web server's API requires (or set AIFLOW_WEBSERVER_TOKEN)"),
    Key("api.url", str, "", "AIFLOW_API_URL",
        "URL of an aiflow web server (http://host:8080); when set, aiflow.ops and the CLI go through its REST API "
        "instead of the database (client mode)"),
    Key("api.token_file", str, "", "AIFLOW_API_TOKEN_FILE",
        "a file holding the bearer token client mode sends to api.url (or set AIFLOW_API_TOKEN)"),
    Key("api.timeout", int, 120, "AIFLOW_API_TIMEOUT",
        "seconds client mode waits for an answer of the REST API (an upload loads the file on the server)"),
    Key("metrics.host", str, "127.0.0.1", "AIFLOW_METRICS_HOST",
        "address the services' Prometheus /metrics endpoints listen on (0.0.0.0: every interface)"),
    Key("metrics.scheduler_port", int, 9108, "AIFLOW_METRICS_SCHEDULER_PORT",
        "port of the /metrics endpoint of `aiflow scheduler start` and `aiflow standalone` (0: none)"),
    Key("metrics.worker_port", int, 9109, "AIFLOW_METRICS_WORKER_PORT",
        "port of the /metrics endpoint of `aiflow worker start` (0: none)"),
    Key("worker.slots", int, 4, "AIFLOW_WORKER_SLOTS", "tries one worker runs at once"),
    Key("worker.heartbeat_interval", int, 5, "AIFLOW_WORKER_HEARTBEAT_INTERVAL",
        "seconds between a worker's heartbeats (for each running try, and a beacon to every inbox partition)"),
    Key("worker.preload", bool, True, "AIFLOW_WORKER_PRELOAD",
        "whether the fork server keeps warm forks that have imported, once, the modules workflow files import "
        "(numpy, scikit-learn, ...), so a try only forks and runs the file"),
    Key("worker.task_credentials", bool, False, "AIFLOW_WORKER_TASK_CREDENTIALS",
        "whether tasks inherit the worker's database URI and Kafka secrets in their environment"),
    Key("worker.stop_grace", int, 10, "AIFLOW_WORKER_STOP_GRACE",
        "seconds between SIGTERM and SIGKILL when a try is stopped"),
    Key("worker.working_dir_retention", int, 7 * 24 * 3600, "AIFLOW_WORKER_WORKING_DIR_RETENTION",
        "seconds after its last change that an execution's working folder and task logs are removed, unless "
        "one of its tries runs on this worker (0 keeps them)"),
    Key("worker.isolated_namespaces", str, "", "AIFLOW_WORKER_ISOLATED_NAMESPACES",
        "namespaces whose tasks may send events only into their own namespace (comma-separated; * for all)"),
    Key("broker.host", str, "127.0.0.1", "AIFLOW_BROKER_HOST",
        "address the local broker listens on and advertises to clients (this machine's address, for clients "
        "on other machines)"),
    Key("broker.port", int, 9092, "AIFLOW_BROKER_PORT", "client port of the local broker"),
    Key("broker.controller_port", int, 9093, "AIFLOW_BROKER_CONTROLLER_PORT",
        "KRaft controller port of the local broker"),
    Key("broker.heap", str, "512m", "AIFLOW_BROKER_HEAP", "Java heap of the local broker (of each node)"),
    Key("broker.nodes", int, 1, "AIFLOW_BROKER_NODES",
        "nodes of the local broker: 3 makes a cluster on loopback (node i on broker.port + 2(i-1) and "
        "broker.controller_port + 2(i-1)); internal topics then keep 3 replicas, 2 in sync"),
    Key("broker.kafka_version", str, "4.1.1", "AIFLOW_BROKER_KAFKA_VERSION",
        "Apache Kafka version the local broker fetches from Maven Central"),
    Key("broker.cache_dir", str, "", "AIFLOW_BROKER_CACHE_DIR",
        "where the local broker's jars are kept once fetched (empty: the user's cache, "
        "$XDG_CACHE_HOME/aiflow/kafka or ~/.cache/aiflow/kafka, shared by every aiflow home)"),
    Key("logs.max_bytes", int, 50 * 1024 * 1024, "AIFLOW_LOG_MAX_BYTES",
        "size at which the log of a background service (scheduler, worker, standalone) is rotated (0: never)"),
    Key("logs.backups", int, 5, "AIFLOW_LOG_BACKUPS",
        "rotated logs kept per service (<service>.log.1 is the newest)"),
)
KEYS_BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
MAP_KEYS = ("kafka.properties",)


def mask_uri(text: str) -> str:
    """A URI with the password of its `user:password@` part, and the values of query parameters named like
    secrets (`?X-Amz-Security-Token=...`), written as ***. The password may hold a raw `/`, as AWS
    secret keys do."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"([?&][^=&#\s]*(?:password|secret|token|signature|key)[^=&#\s]*=)[^&#\s]*", r"\1***", text,
                  flags=re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a setting's name says it holds a secret (a password, a token, a key...)."""
    lowered = name.lower()
    return any(word in lowered for word in ("password", "secret", "token", "oauthbearer", "key"))


def without_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without what only services need: the database URI, the webhook, web server and
    API tokens and the secret Kafka properties (user code — tasks, workflow files — runs with this)."""
    return {name: value for name, value in environ.items()
            if name not in ("AIFLOW_DB_URI", "AIFLOW_WEBHOOK_TOKEN", "AIFLOW_API_TOKEN", "AIFLOW_WEBSERVER_TOKEN")
            and not (name.startswith(KAFKA_PROPERTY_ENV_PREFIX) and is_secret_name(name))}


def is_loopback(host: str) -> bool:
    """Whether a listen address is this machine's own (only it can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(env_name: str, token_file: str | None, what: str) -> str | None:
    """A bearer token: the content of `token_file` when given, else the variable `env_name` (never a
    command-line argument, which every user of the machine sees in `ps`)."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} token from {token_file}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"the {what} token file {token_file} is empty")
        return token
    return os.environ.get(env_name) or None


def isolated_names(spec: str) -> frozenset[str]:
    """The namespaces a `worker.isolated_namespaces` value names ('*' stands for all)."""
    return frozenset(n.strip() for n in spec.split(",") if n.strip())


def default_home() -> Path:
    return Path(os.environ.get("AIFLOW_HOME") or Path.home() / "aiflow").expanduser()


def _convert(key: Key, raw: Any, origin: str) -> Any:
    where = f"{key.name} (from {origin})"
    if key.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{where}: {raw!r} is not a boolean (use true or false)")
    if key.type is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: {raw!r} is not an integer")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{where}: {raw!r} is not an integer") from None
    if isinstance(raw, (dict, list)):
        raise ConfigError(f"{where}: expected a single value, got {type(raw).__name__}")
    return str(raw)


_ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")


def _expand(text: str, name: str, home: Path, env: Mapping[str, str]) -> str:
    def lookup(match: re.Match[str]) -> str:
        if match.group(1) not in env:
            raise ConfigError(f"{name}: {text!r} names ${{{match.group(1)}}}, which is not set")
        return env[match.group(1)]

    return _ENV_REFERENCE.sub(lookup, text.replace("{home}", str(home)))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in data.items():
        dotted = f"{prefix}{name}"
        if dotted in MAP_KEYS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{dotted}: expected a mapping of property names to values")
            flat[dotted] = {str(k): str(v) for k, v in value.items()}
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


@dataclass
class Config:
    """The resolved configuration of one aiflow home."""

    home: Path
    values: dict[str, Any]
    sources: dict[str, str]
    kafka_properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        home_path = Path(home).expanduser() if home is not None else default_home()
        values = {k.name: k.default for k in KEYS}
        sources = {k.name: "default" for k in KEYS}
        kafka_properties: dict[str, str] = {}

        path = home_path / CONFIG_FILE
        if path.exists():
            import yaml  # here: a home configured by environment alone never loads the YAML parser

            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} is not valid YAML: {exc}") from None
            if not isinstance(data, Mapping):
                raise ConfigError(f"{path} must hold a mapping of keys to values")
            for name, raw in _flatten(data).items():
                if name == "kafka.properties":
                    kafka_properties.update(raw)
                    continue
                key = KEYS_BY_NAME.get(name)
                if key is None:
                    raise ConfigError(f"{path}: unknown key {name!r} (see `aiflow config list`)")
                values[name] = _convert(key, raw, str(path))
                sources[name] = "file"

        for key in KEYS:
            if key.env in env:
                values[key.name] = _convert(key, env[key.env], f"${key.env}")
                sources[key.name] = "env"
        for name, raw in env.items():
            if name.startswith(KAFKA_PROPERTY_ENV_PREFIX) and len(name) > len(KAFKA_PROPERTY_ENV_PREFIX):
                prop = name[len(KAFKA_PROPERTY_ENV_PREFIX):].lower().replace("_", ".")
                kafka_properties[prop] = raw

        for name, value in values.items():
            if isinstance(value, str):
                values[name] = _expand(value, name, home_path, env)
        kafka_properties.update({k: _expand(v, f"kafka.properties.{k}", home_path, env)
                                 for k, v in kafka_properties.items()})
        config = cls(home=home_path, values=values, sources=sources, kafka_properties=kafka_properties)
        config.validate()
        return config

    def validate(self) -> None:
        if not 1 <= self.values["broker.nodes"] <= 9:
            raise ConfigError(f"broker.nodes: 1 to 9 nodes, got {self.values['broker.nodes']}")
        if self.values["topics.min_insync_replicas"] > self.values["topics.replication_factor"]:
            raise ConfigError("topics.min_insync_replicas: cannot be more than topics.replication_factor")
        for name in ("topics.partitions", "topics.replication_factor", "topics.min_insync_replicas",
                     "scheduler.heartbeat_timeout",
                     "scheduler.stop_timeout", "scheduler.queue_timeout", "worker.slots", "worker.heartbeat_interval",
                     "api.timeout"):
            if self.values[name] < 1:
                raise ConfigError(f"{name}: must be at least 1, got {self.values[name]}")
        for name in ("worker.working_dir_retention", "scheduler.snapshot_cache_retention", "logs.max_bytes"):
            if self.values[name] < 0:
                raise ConfigError(f"{name}: must be 0 (off) or more, got {self.values[name]}")
        if self.values["logs.backups"] < 1:
            raise ConfigError(f"logs.backups: must be at least 1, got {self.values['logs.backups']}")
        for name in self.isolated_namespaces - {"*"}:
            if not all(c.isalnum() or c in "._-" for c in name):
                raise ConfigError(f"worker.isolated_namespaces: {name!r} is not a namespace name")
        host = str(self.values["broker.host"])
        # Clients connect to the address the broker advertises: a wildcard or a name with a port cannot be one.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*", host) or host in ("0.0.0.0", "0"):
            raise ConfigError(f"broker.host: {host!r} is not an address clients can connect to (an IPv4 address "
                              "or a host name of this machine)")
        for name in ("broker.port", "broker.controller_port"):
            if not 0 < self.values[name] < 65536:
                raise ConfigError(f"{name}: {self.values[name]} is not a TCP port")
        for name in ("metrics.scheduler_port", "metrics.worker_port"):
            if not 0 <= self.values[name] < 65536:
                raise ConfigError(f"{name}: {self.values[name]} is not a TCP port (or 0: no endpoint)")
        url = str(self.values["api.url"])
        if url and not re.match(r"https?://[^/\s]+", url):
            raise ConfigError(f"api.url: {url!r} is not an http:// or https:// URL")
        for name in ("topics.events_retention_ms", "topics.retention_ms", "topics.dlq_retention_ms",
                     "topics.logs_retention_ms"):
            if self.values[name] < -1 or self.values[name] == 0:
                raise ConfigError(f"{name}: must be -1 (forever) or a positive number of milliseconds")
        prefix = self.values["topics.prefix"]
        if not prefix or not all(c.isalnum() or c in "._-" for c in prefix):
            raise ConfigError(f"topics.prefix: {prefix!r} may hold only letters, digits, '.', '_' and '-'")

    def get(self, name: str) -> Any:
        if name == "kafka.properties":
            return dict(self.kafka_properties)
        if name.startswith("kafka.properties."):
            prop = name[len("kafka.properties."):]
            if prop not in self.kafka_properties:
                raise ConfigError(f"{name}: no such Kafka property is set")
            return self.kafka_properties[prop]
        if name not in self.values:
            raise ConfigError(f"unknown key {name!r} (see `aiflow config list`)")
        return self.values[name]

    @property
    def bootstrap(self) -> str:
        if self.values["kafka.bootstrap"]:
            return str(self.values["kafka.bootstrap"])
        port, nodes = int(self.values["broker.port"]), int(self.values["broker.nodes"])
        host = str(self.values["broker.host"])
        return ",".join(f"{host}:{port + 2 * i}" for i in range(nodes))

    @property
    def uses_local_broker(self) -> bool:
        return not self.values["kafka.bootstrap"]

    @property
    def topic_prefix(self) -> str:
        return str(self.values["topics.prefix"])

    @property
    def namespace(self) -> str:
        return str(self.values["namespace"])

    @property
    def isolated_namespaces(self) -> frozenset[str]:
        """The namespaces of `worker.isolated_namespaces` ('*' stands for all)."""
        return isolated_names(str(self.values["worker.isolated_namespaces"]))

    def is_isolated(self, namespace: str) -> bool:
        """Whether the tasks of `namespace` may send events only into it."""
        isolated = self.isolated_namespaces
        return "*" in isolated or namespace in isolated

    @property
    def db_uri(self) -> str:
        return str(self.values["db.uri"])

    @property
    def safe_db_uri(self) -> str:
        """The database URI with its password masked, for logs and messages."""
        return mask_uri(self.db_uri)

    def with_overrides(self, **values: Any) -> Config:
        """A copy with some keys replaced (dotted names written with '__' for '.')."""
        new_values = dict(self.values)
        new_sources = dict(self.sources)
        for arg, value in values.items():
            name = arg.replace("__", ".")
            if name not in KEYS_BY_NAME:
                raise ConfigError(f"unknown key {name!r}")
            new_values[name] = value
            new_sources[name] = "override"
        config = Config(self.home, new_values, new_sources, dict(self.kafka_properties))
        config.validate()
        return config


def default_file_text() -> str:
    """The commented `aiflow.yaml` that `aiflow config init` writes."""
    lines = ["# aiflow configuration. Every key can be overridden by the environment variable shown.", ""]
    section = ""
    for key in KEYS:
        head, _, leaf = key.name.rpartition(".")
        if head != section:
            if head:
                lines.append(f"{head}:")
            section = head
        indent = "  " if head else ""
        default = json.dumps(key.default)  # JSON scalars are YAML scalars, quoted where needed
        lines.append(f"{indent}# {key.doc} (${key.env})")
        lines.append(f"{indent}{leaf}: {default}")
        if key.name == "kafka.bootstrap":
            lines.append(f"{indent}# any librdkafka property, e.g. security.protocol: SASL_SSL "
                         f"(${KAFKA_PROPERTY_ENV_PREFIX}<NAME>)")
            lines.append(f"{indent}properties: {{}}")
    return "\n".join(lines) + "\n"
