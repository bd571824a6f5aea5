"""Event-log sinks: whole lines appended to files (also from several processes), Kafka settings."""

from __future__ import annotations

import multiprocessing
import os
import socket
import time

import pytest

from components.core import eventlog
from components.core.eventlog import (
    EventLogError,
    FileEventLog,
    create_topic,
    encode_line,
    line_key,
    open_event_log,
    parse_kafka_uri,
)

LINE = "2026-03-18T06:12:47,42,GET /data/m/the+matrix+1999/3.mpg"


def test_file_log_appends_lines_and_reopens_in_append_mode(tmp_path):
    path = tmp_path / "logs" / "events.log"
    with open_event_log(f"file:{path}") as log:
        log.append(LINE)
        assert log.extend([LINE + "\n", "x"]) == 2
    with open_event_log(str(path)) as log:  # a bare path is a file too
        log.append("y")
    assert path.read_text().splitlines() == [LINE, LINE, "x", "y"]


def test_file_uri_forms(tmp_path):
    for uri in (f"file:{tmp_path}/a.log", f"file://{tmp_path}/b.log", f"{tmp_path}/c.log"):
        log = open_event_log(uri)
        assert isinstance(log, FileEventLog)
        log.close()
        log.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="unknown event log"):
        open_event_log("s3://bucket/events")


def test_flush_writes_and_fsyncs(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(eventlog.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "events.log"
    log = open_event_log(f"file:{path}")
    log.append(LINE)
    assert path.read_bytes() == b""  # buffered until a batch is written
    log.flush()
    assert path.read_bytes() == (LINE + "\n").encode() and len(synced) == 1
    log.close()
    with pytest.raises(EventLogError, match="closed"):
        log.append(LINE)
        log.flush()


def test_garbage_bytes_survive_and_line_breaks_are_refused(tmp_path):
    garbage = "2026-03-18T06:12:47,4\udcff\udcfe2,GET /create_account"
    assert encode_line(garbage) == b"2026-03-18T06:12:47,4\xff\xfe2,GET /create_account"
    with pytest.raises(ValueError, match="line break"):
        encode_line("a\nb")
    with pytest.raises(ValueError, match="line break"):
        encode_line("a\rb")
    path = tmp_path / "events.log"
    with open_event_log(f"file:{path}") as log:
        log.append(garbage)
    assert path.read_bytes() == b"2026-03-18T06:12:47,4\xff\xfe2,GET /create_account\n"


def _writer(path: str, writer: int, n: int) -> None:
    with FileEventLog(path, buffer_bytes=700) as log:  # many small batches, to race the other writers
        for i in range(n):
            log.append(f"2026-03-18T06:12:47,{writer},GET /data/m/movie+{writer}+2001/{i}.mpg")


def test_several_processes_append_whole_lines(tmp_path):
    path = str(tmp_path / "events.log")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 3000)) for w in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == 9000
    for w in (1, 2, 3):
        mine = [line for line in lines if line.startswith(f"2026-03-18T06:12:47,{w},")]
        assert mine == [f"2026-03-18T06:12:47,{w},GET /data/m/movie+{w}+2001/{i}.mpg" for i in range(3000)]


def test_line_key_is_the_user_id():
    assert line_key(LINE) == b"42"
    assert line_key("garbage") is None
    assert line_key("2026-03-18T06:12:47,,GET /create_account") is None


def test_kafka_uri():
    assert parse_kafka_uri("kafka://127.0.0.1:9092/movielog") == ("127.0.0.1:9092", "movielog")
    assert parse_kafka_uri("kafka://a:1,b:2/t") == ("a:1,b:2", "t")
    for bad in ("kafka://127.0.0.1:9092", "kafka:///t", "kafka://h:1/a/b", "http://h/t"):
        with pytest.raises(ValueError):
            parse_kafka_uri(bad)


class FakeFuture:
    def __init__(self, error=None):
        self.error = error

    def add_errback(self, fn):
        if self.error:
            fn(self.error)


class FakeProducer:
    instances: list = []

    def __init__(self, **config):
        self.config, self.sent, self.flushed, self.closed = config, [], 0, False
        self.fail = False
        FakeProducer.instances.append(self)

    def send(self, topic, value, key):
        self.sent.append((topic, value, key))
        return FakeFuture(RuntimeError("broker said no") if self.fail else None)

    def flush(self, timeout=None):
        self.flushed += 1

    def close(self, timeout=None):
        self.closed = True


def test_kafka_log_keys_by_user_waits_for_all_replicas_and_bounds_every_wait(monkeypatch):
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    with open_event_log("kafka://127.0.0.1:9092/movielog") as log:
        producer = FakeProducer.instances[-1]
        log.append(LINE)
        log.extend(["", "x,y"])
        assert producer.flushed == 1
    config = producer.config
    assert config["acks"] == "all" and config["linger_ms"] > 0
    assert config["bootstrap_timeout_ms"] <= 10000 and config["max_block_ms"] <= 30000
    assert config["request_timeout_ms"] <= 30000
    assert producer.sent == [("movielog", LINE.encode(), b"42"), ("movielog", b"", None), ("movielog", b"x,y", None)]
    assert producer.closed


def test_kafka_delivery_failure_is_an_event_log_error(monkeypatch):
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    log = open_event_log("kafka://127.0.0.1:9092/movielog")
    FakeProducer.instances[-1].fail = True
    log.append(LINE)
    with pytest.raises(EventLogError, match="not delivered"):
        log.flush()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_kafka_fails_within_the_bootstrap_timeout():
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(EventLogError, match=f"cannot reach Kafka at 127.0.0.1:{port}"):
        open_event_log(f"kafka://127.0.0.1:{port}/events", bootstrap_timeout_ms=1000)
    with pytest.raises(EventLogError, match="cannot reach Kafka"):
        create_topic(f"127.0.0.1:{port}", "events", timeout_ms=1000)
    assert time.monotonic() - started < 8


# -- Kafka security settings: one function for every client ---------------------------------------

SCRAM_ENV = {"MOVIEREC_KAFKA_USERNAME": "movierec", "MOVIEREC_KAFKA_PASSWORD": "s3cret"}


def test_client_config_is_plaintext_without_settings():
    config = eventlog.kafka_client_config("a:9092, b:9092", "c1", environ={})
    assert config == {"bootstrap_servers": ["a:9092", "b:9092"], "client_id": "c1",
                      "security_protocol": "PLAINTEXT"}


def test_client_config_takes_scram_and_tls_from_the_environment(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = eventlog.kafka_client_config("k:9093", "c1", environ=SCRAM_ENV)
    assert config["security_protocol"] == "SASL_PLAINTEXT" and config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("movierec", "s3cret")
    env = {**SCRAM_ENV, "MOVIEREC_KAFKA_CA_FILE": str(ca), "MOVIEREC_KAFKA_SASL_MECHANISM": "scram-sha-256"}
    config = eventlog.kafka_client_config("k:9093", "c1", environ=env)
    assert config["security_protocol"] == "SASL_SSL" and config["sasl_mechanism"] == "SCRAM-SHA-256"
    assert config["ssl_cafile"] == str(ca) and config["ssl_check_hostname"] is True
    config = eventlog.kafka_client_config("k:9093", "c1", environ={"MOVIEREC_KAFKA_CA_FILE": str(ca)})
    assert config["security_protocol"] == "SSL" and "sasl_mechanism" not in config
    secret = tmp_path / "password"
    secret.write_text("from-a-secret\n")
    env = {"MOVIEREC_KAFKA_USERNAME": "u", "MOVIEREC_KAFKA_PASSWORD_FILE": str(secret)}
    assert eventlog.kafka_client_config("k:9093", "c1", environ=env)["sasl_plain_password"] == "from-a-secret"


@pytest.mark.parametrize(("env", "says"), [
    ({"MOVIEREC_KAFKA_SECURITY_PROTOCOL": "TLS"}, "MOVIEREC_KAFKA_SECURITY_PROTOCOL"),
    ({"MOVIEREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "MOVIEREC_KAFKA_USERNAME"),
    ({"MOVIEREC_KAFKA_USERNAME": "u"}, "MOVIEREC_KAFKA_PASSWORD"),
    ({**SCRAM_ENV, "MOVIEREC_KAFKA_SASL_MECHANISM": "GSSAPI"}, "MOVIEREC_KAFKA_SASL_MECHANISM"),
    ({**SCRAM_ENV, "MOVIEREC_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "sends no credentials"),
    ({"MOVIEREC_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, "MOVIEREC_KAFKA_CA_FILE"),
    ({"MOVIEREC_KAFKA_USERNAME": "u", "MOVIEREC_KAFKA_PASSWORD_FILE": "/nonexistent"}, "PASSWORD_FILE"),
])
def test_incomplete_security_settings_are_a_user_error_naming_the_variable(env, says):
    from components.core.errors import UserError

    with pytest.raises(UserError, match=says):
        eventlog.kafka_client_config("k:9093", "c1", environ=env)


def test_the_producer_connects_with_the_security_settings(monkeypatch):
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", FakeProducer)
    for name, value in SCRAM_ENV.items():
        monkeypatch.setenv(name, value)
    with open_event_log("kafka://127.0.0.1:9092/movielog"):
        config = FakeProducer.instances[-1].config
    assert config["security_protocol"] == "SASL_PLAINTEXT" and config["sasl_plain_password"] == "s3cret"


def test_a_refused_login_is_one_auth_error_naming_what_to_fix():
    from kafka.errors import KafkaTimeoutError

    config = eventlog.kafka_client_config("k:9093", "c1", environ=SCRAM_ENV)
    logged = ["Connection failed: [Error 58] SaslAuthenticationFailedError: Authentication failed during "
              "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"] * 30
    error = eventlog.connection_error(config, "opening a producer", KafkaTimeoutError("Unable to bootstrap"), logged)
    assert isinstance(error, eventlog.KafkaAuthError) and error.exit_code == 2
    assert "refused the credentials of user 'movierec'" in str(error) and "MOVIEREC_KAFKA_PASSWORD" in str(error)
    assert "s3cret" not in str(error) and "\n" not in str(error)
    dropped = ["<KafkaTCPTransport [127.0.0.1:9093<-1]>: socket disconnected"] * 9  # what a SCRAM refusal looks like
    error = eventlog.connection_error(config, "x", KafkaTimeoutError("Unable to bootstrap"), dropped)
    assert isinstance(error, eventlog.KafkaAuthError) and "closed every connection during SASL" in str(error)
    tls = eventlog.kafka_client_config("k:9093", "c1", environ={"MOVIEREC_KAFKA_SECURITY_PROTOCOL": "SSL"})
    error = eventlog.connection_error(tls, "x", KafkaTimeoutError("Unable to bootstrap"),
                                      ["Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"])
    assert isinstance(error, eventlog.KafkaAuthError) and "MOVIEREC_KAFKA_CA_FILE" in str(error)
    plain = eventlog.connection_error(config, "x", KafkaTimeoutError("Unable to bootstrap"), [])
    assert type(plain) is EventLogError and "cannot reach Kafka at k:9093" in str(plain)


def test_every_kafka_client_in_the_code_takes_its_settings_from_kafka_client_config():
    """A client built with its own `bootstrap_servers=` would connect without SASL/TLS."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    found = []
    for folder in ("components", "predictor", "simulator", "pipelines", "movierec"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            for m in re.finditer(r"(?<!class )\b(_Consumer|KafkaConsumer|KafkaProducer|KafkaAdminClient)\(", text):
                call = text[m.end():m.end() + 200]
                found.append(path.name)
                assert "**config" in call.split(")")[0] or call.startswith(("*topics", ")")), \
                    f"{path.relative_to(root)}: {m.group(0)} without **kafka_client_config(...)"
    assert {"eventlog.py", "kafka_source.py"} <= set(found)
