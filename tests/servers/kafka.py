"""A real Apache Kafka broker for the integration tests: KRaft single node, jars from Maven Central.

No distribution tarball: `kafka-pom.xml` beside this file names the broker's jars, Maven copies
them once into a cache outside the repository (`$MOVIEREC_CACHE/kafka-<version>/jars`, default
`~/.cache/movierec/...`), and the broker runs the two classes Kafka's own scripts wrap:
`kafka.tools.StorageTool format` (once per data dir) and `kafka.Kafka server.properties`.

    with KafkaBroker() as broker:
        broker.create_topic("events", partitions=3)
        ... KafkaProducer(bootstrap_servers=broker.bootstrap) ...
        broker.restart()          # same port, same data
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from tests.servers._process import (
    LOOPBACK,
    ServerError,
    ServerProcess,
    free_port,
    require_executable,
    run_checked,
)

POM = Path(__file__).with_name("kafka-pom.xml")
CACHE_ENV = "MOVIEREC_CACHE"

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_version() -> str:
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not m:
        raise ServerError(f"no <kafka.version> in {POM}")
    return m.group(1)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "movierec")


def fetch_jars(cache: Path | None = None, timeout: float = 600.0) -> Path:
    """The folder of the broker's jars, fetched with Maven on first use (later calls: instant).

    A marker holding the pom's hash says the copy is complete; a lock keeps two concurrent test
    runs from fetching into the same folder at once.
    """
    home = (cache or cache_root()) / f"kafka-{kafka_version()}"
    jars, marker = home / "jars", home / "complete"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if marker.is_file() and marker.read_text().strip() == digest:
        return jars
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == digest:
            return jars
        mvn = require_executable("mvn", "install Maven (Debian: apt-get install maven) to fetch Kafka's jars")
        staging = Path(tempfile.mkdtemp(prefix="jars-", dir=home))
        try:
            run_checked([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                        "fetching Kafka's jars with Maven", timeout)
            if not any(staging.glob("kafka_2.13-*.jar")):
                raise ServerError(f"Maven finished but no kafka_2.13 jar is in {staging}")
            shutil.rmtree(jars, ignore_errors=True)
            staging.rename(jars)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        marker.write_text(digest + "\n")
    return jars


def random_cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage random-uuid` prints it (URL-safe base64 of 16 bytes)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaBroker(ServerProcess):
    """A single-node KRaft broker (broker + controller) on 127.0.0.1, data in a temporary folder."""

    name = "kafka"
    ready_timeout = 90.0

    def __init__(self, workdir: str | os.PathLike | None = None, heap: str = "512m"):
        super().__init__(workdir)
        self.heap = heap
        self.port = free_port()
        self.controller_port = free_port()
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "server.properties"
        self.jars: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def server_properties(self) -> str:
        listeners = f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _java(self) -> list[str]:
        java = require_executable("java", "install a JDK 17+ (Debian: apt-get install default-jre-headless)")
        # C1-only JIT and serial GC: a test broker needs little throughput, and on a busy 2-core
        # machine this halves the start-up time (measured: 20 s -> 11 s under load).
        return [java, f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                "-cp", f"{self.jars}/*"]

    def _prepare(self) -> None:
        self.jars = fetch_jars()
        self.config_path.write_text(self.server_properties())
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        run_checked([*self._java(), "kafka.tools.StorageTool", "format", "--standalone", "--ignore-formatted",
                     "-t", random_cluster_id(), "-c", str(self.config_path)],
                    "formatting the KRaft log directory", 120, log=self.log_path)

    def _command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.config_path)]

    def _ready(self) -> bool:
        admin = self.admin(timeout_ms=2000)
        try:
            return bool(admin.describe_cluster().get("brokers"))
        finally:
            admin.close()

    # -- helpers for tests ---------------------------------------------------------------------
    def admin(self, timeout_ms: int = 10000):
        """A kafka-python admin client with bounded timeouts (the caller closes it)."""
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=timeout_ms,
                                bootstrap_timeout_ms=timeout_ms, client_id="movierec-tests")

    def create_topic(self, name: str, partitions: int = 3, timeout: float = 30.0, **configs) -> str:
        """Create a topic and wait until every partition has a leader."""
        from kafka.admin import NewTopic

        topic_configs = {k.replace("_", "."): str(v) for k, v in configs.items()}
        admin = self.admin()
        try:
            result = admin.create_topics([NewTopic(name, partitions, 1, topic_configs=topic_configs)])
            for topic in result.get("topics", []) if isinstance(result, dict) else []:
                if topic.get("error_code"):
                    raise ServerError(f"creating topic {name!r} failed: {topic}")
            deadline = time.monotonic() + timeout
            while True:
                parts = []
                try:
                    (desc,) = admin.describe_topics([name])
                    parts = desc.get("partitions") or []
                except Exception:
                    pass
                if len(parts) == partitions and all(p.get("leader_id", -1) >= 0 for p in parts):
                    return name
                if time.monotonic() > deadline:
                    raise ServerError(f"topic {name!r} has no leader for every partition after {timeout} s")
                time.sleep(0.1)
        finally:
            admin.close()
