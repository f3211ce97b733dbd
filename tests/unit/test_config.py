from pathlib import Path

import pytest

from aiflow.config import Config, default_file_text
from aiflow.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={})
    assert config.bootstrap == "127.0.0.1:9092"
    assert config.uses_local_broker
    assert config.topic_prefix == "aiflow"
    assert config.db_uri == f"sqlite:///{tmp_path}/aiflow.db"
    assert config.sources["topics.prefix"] == "default"


def test_file_overrides_default_and_env_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "aiflow.yaml").write_text("topics:\n  prefix: fromfile\n  partitions: 5\n")
    config = Config.load(home=tmp_path, environ={"AIFLOW_TOPIC_PREFIX": "fromenv"})
    assert config.topic_prefix == "fromenv" and config.sources["topics.prefix"] == "env"
    assert config.values["topics.partitions"] == 5 and config.sources["topics.partitions"] == "file"


def test_env_names_of_the_documented_keys(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={
        "AIFLOW_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092", "AIFLOW_DB_URI": "postgresql://x/y"})
    assert config.bootstrap == "kafka-1:9092,kafka-2:9092" and not config.uses_local_broker
    assert config.db_uri == "postgresql://x/y"


def test_any_librdkafka_property_from_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "aiflow.yaml").write_text(
        "kafka:\n  properties:\n    security.protocol: SASL_SSL\n    sasl.password: ${SECRET}\n")
    config = Config.load(home=tmp_path, environ={"SECRET": "s3cret", "AIFLOW_KAFKA_PROPERTY_SASL_MECHANISM": "PLAIN"})
    assert config.kafka_properties["sasl.mechanism"] == "PLAIN"
    assert config.kafka_properties["sasl.password"] == "s3cret"
    assert config.kafka_properties["security.protocol"] == "SASL_SSL"


def test_home_placeholder_is_expanded(tmp_path: Path) -> None:
    (tmp_path / "aiflow.yaml").write_text("db:\n  uri: sqlite:///{home}/meta.db\n")
    assert Config.load(home=tmp_path, environ={}).get("db.uri") == f"sqlite:///{tmp_path}/meta.db"


def test_unset_env_var_placeholder_is_an_error_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "aiflow.yaml").write_text("db:\n  uri: ${AIFLOW_TEST_UNSET_VARIABLE}\n")
    with pytest.raises(ConfigError, match="db.uri"):
        Config.load(home=tmp_path, environ={})


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "aiflow.yaml").write_text("topics:\n  prefx: typo\n")
    with pytest.raises(ConfigError, match=r"unknown key 'topics\.prefx'"):
        Config.load(home=tmp_path, environ={})


@pytest.mark.parametrize(("env", "key"), [
    ({"AIFLOW_TOPIC_PARTITIONS": "many"}, "topics.partitions"),
    ({"AIFLOW_TOPIC_PARTITIONS": "0"}, "topics.partitions"),
    ({"AIFLOW_BROKER_PORT": "70000"}, "broker.port"),
    ({"AIFLOW_TOPIC_PREFIX": "bad prefix!"}, "topics.prefix"),
    ({"AIFLOW_TOPIC_EVENTS_RETENTION_MS": "0"}, "topics.events_retention_ms"),
])
def test_bad_values_are_errors_naming_the_key(tmp_path: Path, env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Config.load(home=tmp_path, environ=env)


def test_non_mapping_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "aiflow.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        Config.load(home=tmp_path, environ={})


def test_get_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        Config.load(home=tmp_path, environ={}).get("nope")


def test_init_file_loads_back_to_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "aiflow.yaml").write_text(default_file_text())
    from_file = Config.load(home=tmp_path, environ={})
    defaults = Config.load(home=tmp_path / "empty", environ={})
    home_relative = ("db.uri", "broker.cache_dir", "blob.uri")
    assert {k: v for k, v in from_file.values.items() if k not in home_relative} == \
        {k: v for k, v in defaults.values.items() if k not in home_relative}
    assert from_file.db_uri == f"sqlite:///{tmp_path}/aiflow.db"
    assert set(from_file.sources.values()) == {"file"}


def test_the_local_broker_address_follows_broker_host(tmp_path: Path) -> None:
    assert Config.load(home=tmp_path, environ={}).bootstrap == "127.0.0.1:9092"
    config = Config.load(home=tmp_path, environ={"AIFLOW_BROKER_HOST": "10.7.0.1", "AIFLOW_BROKER_NODES": "3"})
    assert config.bootstrap == "10.7.0.1:9092,10.7.0.1:9094,10.7.0.1:9096"
    for bad in ("0.0.0.0", "10.7.0.1:9092", " host"):
        with pytest.raises(ConfigError, match="broker.host"):
            Config.load(home=tmp_path, environ={"AIFLOW_BROKER_HOST": bad})


def test_the_local_brokers_request_log_level_is_read_from_its_variable_and_warn_without_it() -> None:
    from importlib import resources

    from aiflow.kafka.local_broker import REQUEST_LOG_LEVEL_ENV

    text = (resources.files("aiflow.kafka") / "local" / "log4j2.properties").read_text()
    levels = dict(line.removeprefix("logger.request.").split(" = ", 1) for line in text.splitlines()
                  if line.startswith("logger.request."))
    assert levels == {"name": "kafka.request.logger", "level": f"${{env:{REQUEST_LOG_LEVEL_ENV}:-WARN}}"}
