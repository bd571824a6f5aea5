"""Kafka with SCRAM and TLS: every client of the platform connects with the same settings from the
environment, and refused credentials are one clear line, quickly.

The broker is a real Kafka 4.3 (KRaft) with a SASL_PLAINTEXT and a SASL_SSL listener beside the
plain one, SCRAM users created when its storage is formatted, and a certificate signed by a
throw-away CA (see `tests.servers.kafka`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime

import pytest

from components.core.eventlog import KafkaAuthError, create_topic, open_event_log
from components.core.snapshots import read_events
from components.core.store import LocalStore
from components.ingest.run import ingest
from predictor.request_log import RequestLog
from simulator.service import StreamingService
from tests.conftest import _STARTED, _start
from tests.servers import KafkaBroker

pytestmark = pytest.mark.integration

USER, PASSWORD = "movierec-ingest", uuid.uuid4().hex


@pytest.fixture(scope="module")
def secure_kafka():
    broker = _start(KafkaBroker(scram_users={USER: PASSWORD}, tls=True), "Kafka broker with SCRAM and TLS")
    yield broker
    _STARTED.remove(broker)  # stopped for good: the after-test check must not bring it back
    broker.close()


def scram_env(broker, tls: bool, password: str = PASSWORD) -> dict[str, str]:
    env = {"MOVIEREC_KAFKA_USERNAME": USER, "MOVIEREC_KAFKA_PASSWORD": password,
           "MOVIEREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256" if tls else "SCRAM-SHA-512"}
    if tls:
        env["MOVIEREC_KAFKA_CA_FILE"] = str(broker.ca_file)
    return env


@pytest.mark.parametrize("tls", [False, True], ids=["sasl-scram", "sasl-scram-over-tls"])
def test_simulator_predictor_and_ingest_all_connect_with_scram(secure_kafka, tmp_path, monkeypatch, tls):
    for name, value in scram_env(secure_kafka, tls).items():
        monkeypatch.setenv(name, value)
    bootstrap = secure_kafka.tls_bootstrap if tls else secure_kafka.sasl_bootstrap
    topic = f"events-{uuid.uuid4().hex[:8]}"
    assert create_topic(bootstrap, topic, partitions=2) is True
    lines = list(StreamingService(seed=3, n_users=60, n_movies=40).history(days=1, sessions_per_day=20,
                                                                            start=datetime(2026, 3, 1)))
    with open_event_log(f"kafka://{bootstrap}/{topic}") as log:  # the simulator's producer
        log.extend(lines)
    requests = RequestLog(f"kafka://{bootstrap}/{topic}", "predictor-0")  # the predictor's producer
    for user in range(1, 6):
        requests.record(user, "v1", 200, ["heat+1995", "amelie+2001"], 12)
    requests.close()
    store = LocalStore(tmp_path / "store")
    report = ingest(f"kafka://{bootstrap}/{topic}", store, group="g-secure", write_process=False)
    assert report.read == len(lines) + 5
    served = read_events(store, "recommendation")
    assert (served["server"] == "predictor-0@v1").sum() == 5


def test_the_plain_listener_is_not_the_only_way_in_and_no_credentials_are_refused(secure_kafka, monkeypatch):
    for name in ("MOVIEREC_KAFKA_USERNAME", "MOVIEREC_KAFKA_PASSWORD", "MOVIEREC_KAFKA_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Exception):  # noqa: B017 - a PLAINTEXT client on the SASL port gets nowhere
        open_event_log(f"kafka://{secure_kafka.sasl_bootstrap}/events", bootstrap_timeout_ms=2000)


def test_a_certificate_the_client_does_not_trust_is_one_tls_error(secure_kafka, tmp_path, monkeypatch):
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text((secure_kafka.workdir / "broker.crt").read_text())  # a leaf, not the CA that signed it
    for name, value in {**scram_env(secure_kafka, tls=True), "MOVIEREC_KAFKA_CA_FILE": str(other_ca)}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(KafkaAuthError, match="TLS with Kafka at .* failed .*MOVIEREC_KAFKA_CA_FILE"):
        open_event_log(f"kafka://{secure_kafka.tls_bootstrap}/events", bootstrap_timeout_ms=3000)


def test_a_wrong_password_is_one_line_within_seconds(secure_kafka, tmp_path, monkeypatch):
    for name, value in scram_env(secure_kafka, tls=False, password="not-the-password").items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    with pytest.raises(KafkaAuthError, match=f"refused the credentials of user '{USER}'"):
        open_event_log(f"kafka://{secure_kafka.sasl_bootstrap}/events")
    assert time.monotonic() - started < 15

    env = {**os.environ, **scram_env(secure_kafka, tls=False, password="not-the-password")}
    for command in (["ingest", "--source", f"kafka://{secure_kafka.sasl_bootstrap}/events", "--store",
                     str(tmp_path / "s"), "--follow"],
                    ["simulate", "--to", f"kafka://{secure_kafka.sasl_bootstrap}/events", "--days", "1"]):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "movierec.cli", *command], capture_output=True, text=True,
                              env=env, timeout=120)
        took = time.monotonic() - started
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused the credentials" in lines[0], proc.stderr
        assert "not-the-password" not in proc.stderr + proc.stdout
        assert took < 40, f"{command[0]} took {took:.0f} s to say so"  # even when following
