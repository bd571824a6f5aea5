"""Shared fixtures: the real servers of the integration tests, stores, and the test tiers.

The servers start lazily: a session that only runs unit tests never starts Java or SeaweedFS. The
first test asking for `kafka` or `s3` starts it once for the session; it is stopped (and its data
deleted) at session end. A server that cannot start FAILS every test that needs it, with the
reason and the server's log tail: an integration test never skips silently.

    kafka          session   real Apache Kafka 4.3 KRaft broker: .bootstrap, .stop(), .start(), .restart()
    kafka_topic    function  factory kafka_topic(partitions=3, **configs) -> fresh topic name
    s3             session   real SeaweedFS S3: .endpoint, .access_key, .secret_key, .stop(), .start()
    s3_env         function  AWS_* variables set for the test; returns a fresh bucket name
    s3_store       function  an S3Store on a fresh bucket
    local_store    function  a LocalStore in tmp_path
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.servers import KafkaBroker, SeaweedFS, ServerError, ServerProcess, start_or_fail
from tests.servers._process import exit_on_sigterm

INTEGRATION_DIR = Path(__file__).parent / "integration"

# No per-example deadline: two shared cores make timings noisy. `HYPOTHESIS_PROFILE=thorough` for more.
settings.register_profile("default", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Servers started in this session that should be running: see `_servers_left_running`.
_STARTED: list[ServerProcess] = []


def pytest_configure(config: pytest.Config) -> None:
    exit_on_sigterm()  # a killed test run still stops its servers (atexit)
    # kafka-python 3.0 loads its protocol schemas through the deprecated importlib.resources API.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ is an integration test, marked or not."""
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


def _start(server: ServerProcess, what: str) -> ServerProcess:
    start_or_fail(server, what)
    _STARTED.append(server)
    return server


@pytest.fixture(scope="session")
def kafka():
    """A real Kafka 4.3 broker (KRaft, broker+controller) on 127.0.0.1, for the whole session."""
    broker = _start(KafkaBroker(), "Kafka broker")
    yield broker
    _STARTED.remove(broker)
    broker.close()


@pytest.fixture
def kafka_topic(kafka):
    """Factory: `kafka_topic(partitions=3, **configs)` creates a uniquely named topic.

    Configs use underscores for dots: `kafka_topic(1, retention_ms=60000)`."""

    def create(partitions: int = 3, **configs) -> str:
        return kafka.create_topic(f"test-{uuid.uuid4().hex[:12]}", partitions, **configs)

    return create


@pytest.fixture(scope="session")
def s3():
    """A real SeaweedFS S3 server on 127.0.0.1 with random credentials, for the whole session."""
    server = _start(SeaweedFS(), "SeaweedFS S3 server")
    yield server
    _STARTED.remove(server)
    server.close()


@pytest.fixture
def s3_env(s3, monkeypatch):
    """Point the S3 clients at the test server for one test; return a fresh bucket name."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def s3_store(s3_env):
    from components.core.store import S3Store

    return S3Store(s3_env)


@pytest.fixture
def local_store(tmp_path):
    from components.core.store import LocalStore

    return LocalStore(tmp_path / "store")


@pytest.fixture(autouse=True)
def _servers_left_running():
    """A test that stops a shared server and fails before starting it again must not break the
    next test: bring every session server back up after each test."""
    yield
    for server in list(_STARTED):
        if not server.running:
            error = None
            try:
                server.start()
            except ServerError as exc:
                error = exc
            if error is not None:
                pytest.fail(f"{server.name} could not be restarted after the test: {error}", pytrace=False)
