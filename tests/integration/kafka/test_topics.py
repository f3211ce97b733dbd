from aiflow.config import Config
from aiflow.kafka import topics
from tests.conftest import make_config


def test_create_is_idempotent_and_applies_policies(kafka_bootstrap: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, kafka_bootstrap, AIFLOW_TOPIC_PARTITIONS="2")
    first = topics.create_topics(config)
    assert [r.action for r in first] == ["created"] * len(topics.ALL)
    second = topics.create_topics(config)
    assert [r.action for r in second] == ["exists"] * len(topics.ALL)

    rows = {r["topic"]: r for r in topics.describe_topics(config)}
    prefix = config.topic_prefix
    assert rows[f"{prefix}.state"]["cleanup.policy"] == "compact"
    assert rows[f"{prefix}.workflows"]["cleanup.policy"] == "compact"
    assert rows[f"{prefix}.events"]["retention.ms"] == "-1"
    assert rows[f"{prefix}.inbox"]["partitions"] == 2 and rows[f"{prefix}.state"]["partitions"] == 2
    assert rows[f"{prefix}.control"]["partitions"] == 1
    assert all(r["exists"] for r in rows.values())


def test_create_aligns_a_changed_retention_and_reports_partition_mismatch(kafka_bootstrap: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, kafka_bootstrap)
    topics.create_topics(config)
    changed = Config.load(home=tmp_path, environ={
        "AIFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap, "AIFLOW_TOPIC_PREFIX": config.topic_prefix,
        "AIFLOW_TOPIC_RETENTION_MS": "3600000", "AIFLOW_TOPIC_PARTITIONS": "4"})
    reports = {r.name: r for r in topics.create_topics(changed)}
    inbox = reports[f"{config.topic_prefix}.inbox"]
    assert inbox.action == "updated" and "retention.ms=3600000" in inbox.detail
    assert "has 3 partitions, configured 4" in inbox.detail
    rows = {r["topic"]: r for r in topics.describe_topics(changed)}
    assert rows[f"{config.topic_prefix}.tasks"]["retention.ms"] == "3600000"


def test_list_shows_missing_topics(kafka_bootstrap: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, kafka_bootstrap)
    rows = topics.describe_topics(config)
    assert len(rows) == len(topics.ALL) and not any(r["exists"] for r in rows)
