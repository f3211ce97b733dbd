"""The connectors against the real broker: bridge restarts, dead letters, webhook auth, folder restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka.admin import NewTopic

from aiflow.config import Config
from aiflow.connectors.folder import FolderWatcher
from aiflow.connectors.mapping import Mapping
from aiflow.connectors.webhook import WebhookServer
from aiflow.events import EventClient
from aiflow.kafka import clients, topics
from aiflow.kafka.readers import read_dead_letters
from aiflow.protocol import deadletter as dlq
from tests.conftest import free_port, read_topic


def make_topic(config: Config, partitions: int = 2) -> str:
    name = f"orders-{uuid.uuid4().hex[:8]}"
    admin = clients.admin(config)  # kept alive until the result is in
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result()
    return name


def test_the_bridge_survives_sigkill_without_losing_or_doubling_an_event(kafka_config: Config, tmp_path: Path) -> None:
    source = make_topic(kafka_config)
    producer = clients.producer(kafka_config)
    for i in range(300):
        status = "paid" if i % 3 else "new"
        producer.produce(source, key=str(i).encode(), value=json.dumps({"id": i, "status": status}).encode())
    producer.produce(source, key=b"bad", value=b"{oops")
    producer.flush(10)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}, "AIFLOW_HOME": str(tmp_path),
           "AIFLOW_KAFKA_BOOTSTRAP": kafka_config.bootstrap, "AIFLOW_TOPIC_PREFIX": kafka_config.topic_prefix,
           "AIFLOW_KAFKA_SESSION_TIMEOUT_MS": "3000", "AIFLOW_KAFKA_TRANSACTION_TIMEOUT_MS": "5000"}
    args = [sys.executable, "-m", "aiflow.cli", "connector", "run", "kafka-topic", "--topic", source,
            "--key", "orders.{status}", "--value-field", "id", "--name", "orders"]
    log = open(tmp_path / "bridge.log", "ab")  # noqa: SIM115
    first = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
    with EventClient(kafka_config) as client:
        deadline = time.monotonic() + 60
        while len(client.list_events()) < 20:
            assert time.monotonic() < deadline, (tmp_path / "bridge.log").read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 90
            while len(client.list_events()) < 300:
                assert time.monotonic() < deadline, len(client.list_events())
                time.sleep(0.2)
            time.sleep(1.0)
            events = client.list_events()
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
    assert Counter(e.value for e in events) == Counter(str(i) for i in range(300))  # each record exactly once
    assert {e.key for e in events} == {"orders.paid", "orders.new"}
    dead = read_topic(kafka_config, topics.DLQ)
    assert [m.value() for m in dead] == [b"{oops"]
    assert "not JSON" in dict(dead[0].headers())[dlq.REASON].decode()


def post(url: str, body: object, token: str | None = None) -> tuple[int, dict[str, object]]:
    return post_bytes(url, json.dumps(body).encode(), token)


def post_bytes(url: str, data: bytes, token: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_webhook_needs_its_token_and_answers_once_the_event_is_stored(kafka_config: Config) -> None:
    server = WebhookServer(kafka_config, port=free_port(), token="s3cret",
                           mapping=Mapping(key="github.{action}", value="number"))
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        assert post(f"{url}/events", {"key": "deploy"})[0] == 401
        assert post(f"{url}/events", {"key": "deploy"}, token="wrong")[0] == 401
        status, body = post(f"{url}/events", {"key": "deploy", "value": "v1.2", "namespace": "ops"}, token="s3cret")
        assert status == 200 and body["key"] == "deploy" and body["offset"] is not None
        assert post(f"{url}/events", {"value": "no key"}, token="s3cret") == (400, {"error": "'key' must be a "
                                                                                              "non-empty string"})
        raw = post(f"{url}/events/raw", {"action": "opened", "number": 42}, token="s3cret")
        assert raw[0] == 200 and raw[1]["key"] == "github.opened"
        status, body = post(f"{url}/events/raw", {"number": 42}, token="s3cret")
        assert status == 400 and "no field 'action'" in str(body["error"])
        assert post(f"{url}/other", {}, token="s3cret")[0] == 404
    finally:
        stop.set()
        thread.join(timeout=10)
    with EventClient(kafka_config, namespace="ops") as client:
        [stored] = client.list_events(key="deploy")
    assert stored.value == "v1.2" and stored.sender == "webhook"
    with EventClient(kafka_config) as client:
        assert [e.value for e in client.list_events(key="github.opened")] == ["42"]


def test_the_webhook_answers_400_to_what_cannot_be_an_event(kafka_config: Config) -> None:
    server = WebhookServer(kafka_config, port=free_port())
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.port}/events"
    try:
        status, body = post_bytes(url, b'{"key": "k", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        assert status == 400 and "nested too deeply" in str(body["error"])
        status, body = post_bytes(url, b'{"key": "k\\ud800"}')
        assert status == 400 and "cannot be encoded" in str(body["error"])
        status, body = post(url, {"key": "k", "value": "x" * 899_990})
        assert status == 400 and "over the limit of 900,000 bytes" in str(body["error"])
        status, body = post(url, {"key": "k", "value": "x" * 2_000_000})
        assert status == 400 and "1,800,000 bytes" in str(body["error"])
        assert post(url, {"key": "k", "value": "fine"})[0] == 200
    finally:
        stop.set()
        thread.join(timeout=10)
    assert read_topic(kafka_config, topics.DLQ, timeout=5) == []


def test_the_bridge_dead_letters_records_that_cannot_be_events_and_goes_on(kafka_config: Config) -> None:
    from aiflow.connectors.kafka_topic import TopicBridge

    source = make_topic(kafka_config, partitions=1)
    records = [b'{"status": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested too deeply
               b'{"status": "\\ud800", "id": 1}',  # a lone surrogate in the key field
               b'{"status": "big", "id": "' + b"x" * 950_000 + b'"}',  # an event over the limit
               b'{"status": "paid", "id": 2}']
    producer = clients.producer(kafka_config)
    for value in records:
        producer.produce(source, key=b"k", value=value)
    assert producer.flush(10) == 0
    bridge = TopicBridge(kafka_config, source, Mapping(key="orders.{status}", value="id"), name="junk")
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with EventClient(kafka_config) as client:
            deadline = time.monotonic() + 60
            while not client.list_events(key="orders.paid"):
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.2)
            assert [(e.key, e.value) for e in client.list_events()] == [("orders.paid", "2")]
    finally:
        stop.set()
        thread.join(timeout=30)
    reasons = [d.reason for d in read_dead_letters(kafka_config)]
    assert len(reasons) == 3
    assert "nested too deeply" in reasons[0] and "cannot be encoded" in reasons[1]
    assert "over the limit of 900,000 bytes" in reasons[2]


def test_the_webhook_lets_no_slow_client_hold_it_and_answers_400_to_bad_headers(kafka_config: Config) -> None:
    import socket

    server = WebhookServer(kafka_config, port=free_port(), token="s3cret", read_timeout=1.0)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()

    def raw(request: bytes, wait: float = 0.0) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(request)
            time.sleep(wait)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)

    try:
        started = time.monotonic()
        assert raw(b"POST /events HTTP/1.1\r\nHost: x\r\n") == b""  # stalled in its headers: dropped
        assert time.monotonic() - started < 5
        stalled_body = raw(b"POST /events HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 100\r\n\r\n{")
        assert stalled_body.startswith(b"HTTP/1.0 400") and b"did not arrive" in stalled_body
        bad_length = raw(b"POST /events HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: ten\r\n\r\n")
        assert bad_length.startswith(b"HTTP/1.0 400") and b"Content-Length" in bad_length
        latin = raw("POST /events HTTP/1.1\r\nAuthorization: Bearer é\r\nContent-Length: 2\r\n\r\n{}".encode("latin-1"))
        assert latin.startswith(b"HTTP/1.0 401")
        assert post(f"http://127.0.0.1:{server.port}/events", {"key": "k"}, token="s3cret")[0] == 200
    finally:
        stop.set()
        thread.join(timeout=10)


def test_the_webhook_takes_its_token_from_a_file(kafka_config: Config, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}, "AIFLOW_HOME": str(tmp_path / "h"),
           "AIFLOW_KAFKA_BOOTSTRAP": kafka_config.bootstrap, "AIFLOW_TOPIC_PREFIX": kafka_config.topic_prefix}
    webhook = subprocess.Popen([sys.executable, "-m", "aiflow.cli", "connector", "run", "webhook", "--port", str(port),
                                "--token-file", str(token_file)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status = post(f"http://127.0.0.1:{port}/events", {"key": "k"}, token="from-a-file")[0]
                break
            except OSError:
                assert time.monotonic() < deadline and webhook.poll() is None
                time.sleep(0.3)
        assert status == 200
        assert post(f"http://127.0.0.1:{port}/events", {"key": "k"}, token="wrong")[0] == 401
    finally:
        webhook.send_signal(signal.SIGTERM)
        webhook.wait(timeout=30)


def test_the_webhook_refuses_to_listen_openly_without_a_token(kafka_config: Config) -> None:
    import pytest

    from aiflow.errors import AIFlowError

    with pytest.raises(AIFlowError, match="set a token"):
        WebhookServer(kafka_config, host="0.0.0.0", port=free_port())


def test_the_folder_watcher_announces_complete_files_once_across_restarts(kafka_config: Config,
                                                                          tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "a.csv").write_text("1,2\n")
    (folder / "b.csv.part").write_text("half")
    (folder / "notes.txt").write_text("ignored by the pattern")
    watcher = FolderWatcher(kafka_config, folder, "file_landed", "*.csv", name="landing")
    assert watcher.scan() == []  # first sight: not yet known to be complete
    assert watcher.scan() == [str(folder / "a.csv")]
    assert watcher.scan() == []
    watcher.client.close()

    (folder / "c.csv").write_text("3,4\n")
    restarted = FolderWatcher(kafka_config, folder, "file_landed", "*.csv", name="landing")
    restarted.scan()
    assert restarted.scan() == [str(folder / "c.csv")]  # a.csv is remembered
    restarted.client.close()
    with EventClient(kafka_config) as client:
        assert [e.value for e in client.list_events(key="file_landed")] == [str(folder / "a.csv"),
                                                                           str(folder / "c.csv")]
