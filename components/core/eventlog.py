"""Event-log sinks: where the streaming service and the predictor append their event lines.

Two settings, one interface, chosen by a URI (a local file by default, Kafka on a cluster):

    open_event_log("file:events.log")                    # append-only local file (the default)
    open_event_log("kafka://127.0.0.1:9092/movie-events")    # a Kafka topic

    with open_event_log(uri) as log:
        log.append(line)          # one contract line, no newline
        log.extend(lines)         # a batch
        log.flush()               # everything appended so far is durable

A file log writes whole lines with O_APPEND, so several processes (the simulator and the
predictor's request log) can append to the same file without tearing lines; `flush` fsyncs.
A Kafka log keys every message by the line's user id so that one user's events stay ordered in
one partition, waits for all in-sync replicas (acks='all'), and bounds every wait: a missing
broker is an `EventLogError` within seconds, never a hang. Reading is not done here: ingest
owns the readers.

Every Kafka client of the platform (ingest's consumer, the simulator's and the predictor's
producers, topic creation) takes its connection settings from `kafka_client_config`, which reads
SASL and TLS settings from the environment (secrets never come from a URI or a file in the repo):

    MOVIEREC_KAFKA_SECURITY_PROTOCOL  PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
                                      (default: SASL_* when a user is set, *SSL when a CA file is)
    MOVIEREC_KAFKA_SASL_MECHANISM     SCRAM-SHA-512 (default) | SCRAM-SHA-256 | PLAIN
    MOVIEREC_KAFKA_USERNAME, MOVIEREC_KAFKA_PASSWORD (or MOVIEREC_KAFKA_PASSWORD_FILE)
    MOVIEREC_KAFKA_CA_FILE            CA bundle that signs the brokers' certificates
    MOVIEREC_KAFKA_CERT_FILE, MOVIEREC_KAFKA_KEY_FILE   client certificate (mutual TLS), optional

and `kafka_connection` turns a failed connection (refused credentials, a bad certificate, no
broker) into one `EventLogError` line, keeping kafka-python's own retry log off the console.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from components.core.errors import Unavailable, UserError

ENCODING = "utf-8"
# Corrupted lines in the wild hold bytes that are not UTF-8; they travel as lone surrogates in
# Python strings and go back to the original bytes on the way out.
ENCODING_ERRORS = "surrogateescape"
RETENTION_MS = 30 * 24 * 3600 * 1000  # 30 days: the pipeline can re-ingest a month of history


class EventLogError(Unavailable, RuntimeError):
    """The event log cannot be reached or refused a write; the message says which and why."""


class KafkaAuthError(EventLogError):
    """Kafka refused the credentials or the TLS handshake: a setting to fix, not a server to wait for."""

    exit_code = 2


# -- Kafka connection settings: one function for every client -------------------------------------
ENV_PROTOCOL = "MOVIEREC_KAFKA_SECURITY_PROTOCOL"
ENV_MECHANISM = "MOVIEREC_KAFKA_SASL_MECHANISM"
ENV_USERNAME = "MOVIEREC_KAFKA_USERNAME"
ENV_PASSWORD = "MOVIEREC_KAFKA_PASSWORD"
ENV_PASSWORD_FILE = "MOVIEREC_KAFKA_PASSWORD_FILE"
ENV_CA_FILE = "MOVIEREC_KAFKA_CA_FILE"
ENV_CERT_FILE = "MOVIEREC_KAFKA_CERT_FILE"
ENV_KEY_FILE = "MOVIEREC_KAFKA_KEY_FILE"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def kafka_client_config(bootstrap: str, client_id: str, environ: Mapping[str, str] | None = None) -> dict:
    """The connection settings (kafka-python keyword arguments) of any Kafka client of the platform:
    brokers, client id, and SASL/TLS from the environment (see the module doc).

    Raises `UserError` saying which variable to fix when the settings are incomplete or unknown."""
    env = os.environ if environ is None else environ
    user = env.get(ENV_USERNAME) or None
    ca_file = env.get(ENV_CA_FILE) or None
    protocol = (env.get(ENV_PROTOCOL) or "").strip().upper()
    if not protocol:
        protocol = ("SASL_" if user else "") + ("SSL" if ca_file else "PLAINTEXT")
    if protocol not in PROTOCOLS:
        raise UserError(f"{ENV_PROTOCOL}={env.get(ENV_PROTOCOL)!r} is not one of {', '.join(PROTOCOLS)}")
    config: dict = {"bootstrap_servers": [b.strip() for b in bootstrap.split(",") if b.strip()],
                    "client_id": client_id, "security_protocol": protocol}
    if protocol.startswith("SASL_"):
        mechanism = (env.get(ENV_MECHANISM) or MECHANISMS[0]).strip().upper()
        if mechanism not in MECHANISMS:
            raise UserError(f"{ENV_MECHANISM}={mechanism!r} is not one of {', '.join(MECHANISMS)}")
        password = env.get(ENV_PASSWORD)
        if password is None and env.get(ENV_PASSWORD_FILE):
            password = _read_setting_file(env[ENV_PASSWORD_FILE], ENV_PASSWORD_FILE).rstrip("\r\n")
        if not user or password is None:
            raise UserError(f"Kafka security protocol {protocol} needs {ENV_USERNAME} and {ENV_PASSWORD} "
                            f"(or {ENV_PASSWORD_FILE}) in the environment")
        config.update(sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
    elif user:
        raise UserError(f"{ENV_USERNAME} is set but {ENV_PROTOCOL}={protocol} sends no credentials: "
                        f"use SASL_SSL (or SASL_PLAINTEXT)")
    if protocol.endswith("SSL"):
        for name, key in ((ENV_CA_FILE, "ssl_cafile"), (ENV_CERT_FILE, "ssl_certfile"), (ENV_KEY_FILE, "ssl_keyfile")):
            if env.get(name):
                _read_setting_file(env[name], name)
                config[key] = env[name]
        config["ssl_check_hostname"] = True
    return config


def _read_setting_file(path: str, variable: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise UserError(f"{variable}={path}: cannot read it ({exc.strerror or exc})") from None


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 200:
            self.messages.append(record.getMessage())


_TLS_HINTS = ("certificate", "handshake failed")


@contextmanager
def kafka_connection(config: dict, what: str) -> Iterator[None]:
    """Around creating a Kafka client: kafka-python's own warnings and errors are collected instead
    of printed (they repeat every retry), and a failure becomes one `EventLogError` line that says
    whether the credentials, the TLS setup or the reachability is at fault (`KafkaAuthError` for
    the first two: retrying does not help)."""
    from kafka.errors import KafkaError

    logger, collect = logging.getLogger("kafka"), _Collect()
    propagate = logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield
    except (KafkaError, OSError, ValueError) as exc:
        raise connection_error(config, what, exc, collect.messages) from exc
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate


def connection_error(config: dict, what: str, exc: BaseException, logged: list[str]) -> EventLogError:
    """The one-line error of a failed connection, from the exception and kafka-python's log lines."""
    bootstrap = ",".join(config.get("bootstrap_servers", []))
    protocol = config.get("security_protocol", "PLAINTEXT")
    text = " ".join([str(exc), *logged]).lower()
    user, mechanism = config.get("sasl_plain_username"), config.get("sasl_mechanism")
    if protocol.endswith("SSL") and any(h in text for h in _TLS_HINTS):
        detail = next((m for m in logged if any(h in m.lower() for h in _TLS_HINTS)), str(exc))
        return KafkaAuthError(f"TLS with Kafka at {bootstrap} failed while {what} ({detail[:200]}): check "
                              f"{ENV_CA_FILE} and that the brokers' certificates name the addresses you use")
    if "authentication failed" in text or "saslauthenticationfailed" in text:
        return KafkaAuthError(f"Kafka at {bootstrap} refused the credentials of user {user!r} ({mechanism}) "
                              f"while {what}: check {ENV_USERNAME} and {ENV_PASSWORD}")
    if protocol.startswith("SASL") and "socket disconnected" in text:
        # A broker that refuses SCRAM credentials drops the connection; kafka-python then only sees
        # the disconnect, every retry, until its bootstrap timeout.
        return KafkaAuthError(f"Kafka at {bootstrap} refused the credentials of user {user!r} ({mechanism}) "
                              f"while {what}: it closed every connection during SASL authentication; check "
                              f"{ENV_USERNAME}, {ENV_PASSWORD}, {ENV_MECHANISM} and that this listener takes SASL")
    return EventLogError(f"cannot reach Kafka at {bootstrap} ({protocol}) while {what}: {exc}")


def encode_line(line: str) -> bytes:
    """The bytes of one line (no newline); refuse lines that would break line framing."""
    if line.endswith("\n"):
        line = line[:-1]
    if "\n" in line or "\r" in line:
        raise ValueError(f"an event line cannot hold a line break: {line[:80]!r}")
    return line.encode(ENCODING, ENCODING_ERRORS)


def line_key(line: str) -> bytes | None:
    """The partition key of a line: its user id field (the second one), or None if it has none."""
    parts = line.split(",", 2)
    if len(parts) < 3 or not parts[1]:
        return None
    return parts[1].encode(ENCODING, ENCODING_ERRORS)


class EventLog(ABC):
    """An append-only sink of event lines."""

    uri: str

    @abstractmethod
    def append(self, line: str) -> None:
        """Append one line (without its newline)."""

    def extend(self, lines: Iterable[str]) -> int:
        """Append a batch of lines and hand them on; returns how many were appended."""
        n = 0
        for line in lines:
            self.append(line)
            n += 1
        return n

    @abstractmethod
    def flush(self) -> None:
        """Make everything appended so far durable (fsynced / acknowledged by the broker)."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release the log; further appends fail."""

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileEventLog(EventLog):
    """A local append-only text file, one line per event.

    Lines are buffered and written as whole lines with one `os.write` on an O_APPEND descriptor
    per batch (at most `buffer_bytes`), so concurrent writers never interleave inside a line.
    """

    def __init__(self, path: str | os.PathLike, buffer_bytes: int = 64 * 1024):
        self.path = os.fspath(path)
        self.uri = f"file:{self.path}"
        self.buffer_bytes = buffer_bytes
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EventLogError(f"cannot open event log file {self.path}: {exc}") from exc
        self._buf: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        data = encode_line(line) + b"\n"
        with self._lock:
            self._buf.append(data)
            self._size += len(data)
            if self._size >= self.buffer_bytes:
                self._write_locked()

    def extend(self, lines: Iterable[str]) -> int:
        n = 0
        for line in lines:
            self.append(line)
            n += 1
        with self._lock:
            self._write_locked()
        return n

    def _write_locked(self) -> None:
        if self._fd is None:
            raise EventLogError(f"event log {self.uri} is closed")
        if not self._buf:
            return
        data, self._buf, self._size = b"".join(self._buf), [], 0
        view = memoryview(data)
        try:
            while view:  # a regular file takes the whole write; loop only for the rare short write
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise EventLogError(f"cannot write to event log {self.path}: {exc}") from exc

    def flush(self) -> None:
        with self._lock:
            self._write_locked()
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise EventLogError(f"cannot fsync event log {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                fd, self._fd = self._fd, None
            os.close(fd)


class KafkaEventLog(EventLog):
    """A Kafka topic; one message per line, keyed by user id, value = the line's bytes."""

    def __init__(self, bootstrap: str, topic: str, *, bootstrap_timeout_ms: int = 5000,
                 max_block_ms: int = 10000, request_timeout_ms: int = 10000, linger_ms: int = 20,
                 flush_timeout_s: float = 60.0, client_id: str = "movierec-eventlog"):
        from kafka import KafkaProducer

        self.bootstrap, self.topic = bootstrap, topic
        self.uri = f"kafka://{bootstrap}/{topic}"
        self.flush_timeout_s = flush_timeout_s
        self._errors: list[BaseException] = []
        self._sent = 0
        config = kafka_client_config(bootstrap, client_id)
        with kafka_connection(config, f"opening a producer for topic {topic!r} "
                                      f"(waited {bootstrap_timeout_ms / 1000:g} s)"):
            self._producer = KafkaProducer(
                **config, acks="all",
                linger_ms=linger_ms, batch_size=64 * 1024, max_block_ms=max_block_ms,
                request_timeout_ms=request_timeout_ms, bootstrap_timeout_ms=bootstrap_timeout_ms,
                delivery_timeout_ms=max(120000, request_timeout_ms + linger_ms),
                reconnect_backoff_max_ms=1000)

    def _failed(self, exc: BaseException) -> None:
        self._errors.append(exc)

    def append(self, line: str) -> None:
        from kafka.errors import KafkaError

        if self._producer is None:
            raise EventLogError(f"event log {self.uri} is closed")
        if self._errors:
            self._raise_delivery_error()
        try:
            future = self._producer.send(self.topic, value=encode_line(line), key=line_key(line))
        except KafkaError as exc:
            raise EventLogError(f"cannot send to Kafka topic {self.topic!r} at {self.bootstrap}: {exc!r}") from exc
        future.add_errback(self._failed)
        self._sent += 1

    def extend(self, lines: Iterable[str]) -> int:
        n = super().extend(lines)
        self.flush()
        return n

    def _raise_delivery_error(self) -> None:
        exc = self._errors[0]
        raise EventLogError(f"{len(self._errors)} event(s) not delivered to Kafka topic {self.topic!r} "
                            f"at {self.bootstrap}: {exc!r}") from exc

    def flush(self) -> None:
        from kafka.errors import KafkaError

        if self._producer is None:
            return
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            raise EventLogError(f"Kafka at {self.bootstrap} did not acknowledge events within "
                                f"{self.flush_timeout_s:g} s: {exc!r}") from exc
        if self._errors:
            self._raise_delivery_error()

    def close(self) -> None:
        if self._producer is None:
            return
        try:
            self.flush()
        finally:
            producer, self._producer = self._producer, None
            producer.close(timeout=5)


def parse_kafka_uri(uri: str) -> tuple[str, str]:
    """`kafka://HOST:PORT[,HOST:PORT]/TOPIC` -> (bootstrap, topic); ValueError if malformed."""
    rest = uri[len("kafka://"):] if uri.startswith("kafka://") else ""
    bootstrap, _, topic = rest.partition("/")
    if not bootstrap or not topic or "/" in topic:
        raise ValueError(f"expected kafka://HOST:PORT/TOPIC, got {uri!r}")
    return bootstrap, topic


def open_event_log(uri: str, **options) -> EventLog:
    """Open the sink named by `uri`: `file:PATH` (or a bare path) or `kafka://HOST:PORT/TOPIC`.

    `options` go to the sink (e.g. `bootstrap_timeout_ms` for Kafka, `buffer_bytes` for files).
    """
    if uri.startswith("kafka://"):
        bootstrap, topic = parse_kafka_uri(uri)
        return KafkaEventLog(bootstrap, topic, **options)
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"unknown event log {uri!r}: use file:PATH or kafka://HOST:PORT/TOPIC")
    return FileEventLog(file_path(uri), **options)


def file_path(uri: str) -> str:
    """The local path of a `file:PATH` or `file://PATH` event log (a bare path is its own)."""
    for scheme in ("file://", "file:"):
        if uri.startswith(scheme):
            return uri[len(scheme):]
    return uri


def create_topic(bootstrap: str, topic: str, partitions: int = 3, *, retention_ms: int = RETENTION_MS,
                 retention_bytes: int = -1, replication_factor: int = 1, timeout_ms: int = 10000) -> bool:
    """Create the event topic if it does not exist and set its retention; True if it was created.

    Idempotent: on an existing topic the partition count is left alone and the retention
    settings are (re)applied, so running it twice leaves the same topic.
    """
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    configs = {"retention.ms": str(retention_ms), "retention.bytes": str(retention_bytes)}
    config = kafka_client_config(bootstrap, "movierec-admin")
    with kafka_connection(config, f"creating topic {topic!r}"):
        admin = KafkaAdminClient(**config, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=min(timeout_ms, 5000))
    try:
        created = True
        try:
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": replication_factor,
                                         "configs": configs}}, timeout_ms=timeout_ms)
        except TopicAlreadyExistsError:
            created = False
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
        admin.wait_for_topics([topic], timeout_ms=timeout_ms)
        return created
    except KafkaError as exc:
        raise EventLogError(f"cannot create Kafka topic {topic!r} at {bootstrap}: {exc!r}") from exc
    finally:
        admin.close()
