"""A real Apache Kafka broker for the integration tests: KRaft single node, jars from Maven Central.

No distribution tarball: `kafka-pom.xml` beside this file names the broker's jars, Maven copies
them once into a cache outside the repository (`$MOVIEREC_CACHE/kafka-<version>/jars`, default
`~/.cache/movierec/...`), and the broker runs the two classes Kafka's own scripts wrap:
`kafka.tools.StorageTool format` (once per data dir) and `kafka.Kafka server.properties`.

    with KafkaBroker() as broker:
        broker.create_topic("events", partitions=3)
        ... KafkaProducer(bootstrap_servers=broker.bootstrap) ...
        broker.restart()          # same port, same data

    # SCRAM and TLS listeners beside the plain one (the plain one stays for the other tests):
    with KafkaBroker(scram_users={"movierec": "secret"}, tls=True) as broker:
        broker.sasl_bootstrap     # SASL_PLAINTEXT (SCRAM-SHA-256/512)
        broker.tls_bootstrap      # SASL_SSL with SCRAM users, else SSL; broker.ca_file signs it
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
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
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

    def __init__(self, workdir: str | os.PathLike | None = None, heap: str = "512m",
                 scram_users: dict[str, str] | None = None, tls: bool = False):
        super().__init__(workdir)
        self.heap = heap
        self.port = free_port()
        self.controller_port = free_port()
        self.scram_users = dict(scram_users or {})
        self.sasl_port = free_port() if self.scram_users else None
        self.tls_port = free_port() if tls else None
        self.ca_file = self.workdir / "ca.pem" if tls else None
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "server.properties"
        self.jars: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT listener (SCRAM-SHA-256 and -512), when `scram_users` were given."""
        if self.sasl_port is None:
            raise ServerError("this broker has no SASL listener: pass scram_users")
        return f"{LOOPBACK}:{self.sasl_port}"

    @property
    def tls_bootstrap(self) -> str:
        """The TLS listener (SASL_SSL when `scram_users` were given, else SSL), signed by `ca_file`."""
        if self.tls_port is None:
            raise ServerError("this broker has no TLS listener: pass tls=True")
        return f"{LOOPBACK}:{self.tls_port}"

    @property
    def tls_protocol(self) -> str:
        return "SASL_SSL" if self.scram_users else "SSL"

    def _secure_listeners(self) -> dict[str, int]:
        out = {}
        if self.sasl_port is not None:
            out["SASL_PLAINTEXT"] = self.sasl_port
        if self.tls_port is not None:
            out[self.tls_protocol] = self.tls_port
        return out

    def _secure_settings(self) -> dict[str, str]:
        settings: dict[str, str] = {}
        if self.scram_users:
            settings["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
            for name in self._secure_listeners():
                if name.startswith("SASL"):
                    for mechanism in SCRAM_MECHANISMS:
                        settings[f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config"] = \
                            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        if self.tls_port is not None:
            settings.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(self.workdir / "broker.pem"),
                             "ssl.client.auth": "none"})
        return settings

    def server_properties(self) -> str:
        secure = self._secure_listeners()
        listeners = ",".join([f"PLAINTEXT://{LOOPBACK}:{self.port}", f"CONTROLLER://{LOOPBACK}:{self.controller_port}",
                              *(f"{name}://{LOOPBACK}:{port}" for name, port in secure.items())])
        protocols = ",".join(["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", *(f"{n}:{n}" for n in secure)])
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": protocols,
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
            **self._secure_settings(),
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
        if self.tls_port is not None:
            self._make_certificates()
        scram = [arg for user, password in self.scram_users.items() for mechanism in SCRAM_MECHANISMS
                 for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")]
        run_checked([*self._java(), "kafka.tools.StorageTool", "format", "--standalone", "--ignore-formatted",
                     "-t", random_cluster_id(), "-c", str(self.config_path), *scram],
                    "formatting the KRaft log directory", 120, log=self.log_path)

    def _make_certificates(self) -> None:
        """A throw-away CA (`ca.pem`) and a broker certificate for 127.0.0.1 signed by it, with
        openssl; the broker reads its key and chain from one PEM file."""
        openssl = require_executable("openssl", "install openssl (Debian: apt-get install openssl)")
        d = self.workdir
        steps = [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=movierec-test-ca",
             "-keyout", "ca.key", "-out", "ca.pem"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={LOOPBACK}", "-keyout", "broker.key",
             "-out", "broker.csr"],
            ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", "broker.crt", "-extfile", "san.cnf"],
            ["pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.p8"],
        ]
        (d / "san.cnf").write_text(f"subjectAltName=IP:{LOOPBACK},DNS:localhost\n")
        for args in steps:
            run_checked([openssl, *args], f"openssl {args[0]}", 60, cwd=d)
        (d / "broker.pem").write_text((d / "broker.p8").read_text() + (d / "broker.crt").read_text()
                                      + (d / "ca.pem").read_text())

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
