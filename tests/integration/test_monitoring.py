"""Monitoring for real: a real Prometheus scrapes the running predictor, ingest and online evaluation,
evaluates the recording and alert rules of manifests/monitoring/, answers every Grafana panel
query, and a real Alertmanager, configured from manifests/monitoring/alertmanager.yml, delivers a
firing alert to a local webhook in Slack's payload shape.

The platform runs as in the cluster, on 127.0.0.1: the predictor logs its answers to a Kafka topic,
ingest (`--follow`) stores the topic as snapshots, online evaluation (`--follow`) reads them, and
the test plays the users (requests, then watches of what they were recommended). The queries come
from the files (dashboard JSON, recording rules), never from this test: a renamed metric that a
panel still queries shows up here as a panel without data.

Versions: Debian's Prometheus 2.42 and Alertmanager 0.25 run here; the manifests deploy
Prometheus 3.5 and Alertmanager 0.28 (manifests/monitoring/README.md names what differs). Only
what a test needs to finish in seconds is changed: scrapes every 2 s, rules every 1 s, the alert's
`for` and Alertmanager's group wait shortened, static targets instead of Kubernetes discovery.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from components.core import rollout
from components.core.events import RateEvent, WatchEvent, format_event
from components.core.model_artifact import ModelCard
from components.core.store import LocalStore
from predictor.supervisor import serve_args, start_instance, stop_instance, wait_ready
from tests.servers import (
    AlertmanagerServer,
    PrometheusServer,
    WebhookReceiver,
    free_port,
    start_or_fail,
)
from tests.synthetic_models import synthetic_model

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
INFRA = ROOT / "manifests" / "monitoring-infra"
N_USERS, N_MOVIES = 300, 120
# Panels and rules that cannot have data in a short run on one machine, and why. Everything else
# must return data; each entry must really be empty (a stale reason fails the test too).
NO_DATA_HERE = {
    "node_": "no node-exporter here (a DaemonSet on the cluster's nodes)",
    "movierec:online_hit_rate:baseline_1d": "the baseline averages the previous day, leaving out the last hour",
    # A healthy run has no server-side error: these rules select only failures, so they yield no
    # series at all instead of a zero (sum() of nothing is nothing).
    "movierec:predictor_failed_requests:rate5m": "no 5xx answer in a healthy run",
    "rate(movierec_predictor_errors_total[5m])": "no server-side error in a healthy run (client errors are counted apart)",
}


def no_data_reason(expr: str) -> str | None:
    return next((why for needle, why in NO_DATA_HERE.items() if needle in expr), None)


def _wait(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def _start(server):
    return start_or_fail(server, server.name)


def rules_with_1s_intervals() -> dict[str, str]:
    """The rule files of the manifests, with 1 s evaluation and the service-down alert's `for` at 5 s."""
    files = {}
    for path in (MONITORING / "recording-rules.yaml", MONITORING / "alerts.yaml"):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if rule.get("alert") == "MovierecServiceDown":
                    rule["for"] = "5s"  # a few scrapes: one missed scrape is no outage
        files[path.name] = yaml.safe_dump(doc, sort_keys=False)
    return files




def prometheus_config(targets: dict[str, str], alertmanager: str) -> str:
    """The manifests' Prometheus configuration with static targets standing in for Kubernetes discovery."""
    cm = next(d for d in yaml.safe_load_all((INFRA / "prometheus.yaml").read_text()) if d["kind"] == "ConfigMap")
    config = yaml.safe_load(cm["data"]["prometheus.yml"])
    # 2 s scrapes: on two shared cores a process busy evaluating can miss a 1 s scrape timeout
    config["global"].update(scrape_interval="2s", evaluation_interval="1s", scrape_timeout="2s")
    config["rule_files"] = ["$RULES_DIR/*.yaml"]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            continue  # node-exporter, pushgateway, Prometheus itself: not run here
        job.pop("kubernetes_sd_configs", None)
        job.pop("relabel_configs", None)
        job["static_configs"] = [{"targets": [targets[name]]}]
        jobs.append(job)
    assert {j["job_name"] for j in jobs} == set(targets), "a scrape job of the manifests is missing"
    config["scrape_configs"] = jobs
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(webhook_url_file: Path) -> str:
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    config["global"]["slack_api_url_file"] = str(webhook_url_file)
    config["route"].update(group_wait="1s", group_interval="1s")
    return yaml.safe_dump(config, sort_keys=False)


class Platform:
    """Predictor, ingest and online evaluation as processes on 127.0.0.1, around one Kafka topic."""

    def __init__(self, kafka, tmp: Path):
        self.tmp, self.procs, self.logs = tmp, {}, []
        self.bootstrap = kafka.bootstrap
        self.topic = kafka.create_topic(f"monitoring-{random.randrange(1 << 30):08x}", 3)
        self.store = LocalStore(tmp / "store")
        trained_at = datetime.utcnow().isoformat(timespec="seconds")  # the pipeline's last success
        for version, seed in (("svd-stable", 1), ("svd-canary", 2)):
            synthetic_model(N_USERS, N_MOVIES, 8, seed=seed).save(
                self.store, ModelCard(version=version, algorithm="synthetic", trained_at=trained_at))
        rollout.set_stable(self.store, "svd-stable")
        rollout.start_canary(self.store, "svd-canary", 30)
        self.ports = {"movierec-predictor": free_port(), "movierec-ingest": free_port(),
                      "movierec-online-eval": free_port()}
        source = f"kafka://{self.bootstrap}/{self.topic}"
        port = self.ports["movierec-predictor"]
        ready = tmp / "predictor-ready"
        log = self._log("predictor")
        self.procs["movierec-predictor"] = start_instance(
            serve_args(str(self.store.root), port, workers=1, request_log=source, poll_seconds=1.0), ready,
            log_file=log)
        wait_ready(self.procs["movierec-predictor"], ready, timeout=90)
        self.url = f"http://127.0.0.1:{port}"
        cli = [sys.executable, "-m", "movierec.cli"]
        self.procs["movierec-ingest"] = subprocess.Popen(
            [*cli, "ingest", "--source", source, "--store", str(self.store.root), "--follow", "--batch-size", "50",
             "--linger", "0.5", "--metrics-host", "127.0.0.1", "--metrics-port", str(self.ports["movierec-ingest"])],
            stdout=self._log("ingest"), stderr=subprocess.STDOUT)
        self.procs["movierec-online-eval"] = subprocess.Popen(
            [*cli, "online-eval", "--store", str(self.store.root), "--follow", "--interval", "2", "--window", "5s",
             "--metrics-host", "127.0.0.1", "--metrics-port", str(self.ports["movierec-online-eval"])],
            stdout=self._log("online-eval"), stderr=subprocess.STDOUT)

    def _log(self, name: str):
        f = open(self.tmp / f"{name}.log", "ab")
        self.logs.append(f)
        return f

    def targets(self) -> dict[str, str]:
        return {job: f"127.0.0.1:{port}" for job, port in self.ports.items()}

    def users_request_and_watch(self, n: int, seed: int = 0, bad_user_ids: int = 5) -> int:
        """`n` requests of known and unknown users; most then watch and rate one recommended movie."""
        from kafka import KafkaProducer

        rng = random.Random(seed)
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", max_block_ms=15000,
                                 bootstrap_timeout_ms=15000)
        answered = 0
        try:
            with httpx.Client(base_url=self.url, timeout=5) as client:
                for _ in range(n):
                    user = rng.randint(1, N_USERS + 30)  # some unknown users: popularity fallbacks
                    r = client.get(f"/recommend/{user}")
                    if r.status_code != 200:
                        continue
                    answered += 1
                    movies = r.text.split(",")
                    if rng.random() < 0.6:
                        movie = movies[rng.randrange(min(5, len(movies)))]
                        for minute in range(3):
                            event = WatchEvent(time=datetime.utcnow() + timedelta(seconds=1), user_id=user,
                                               movie_id=movie, minute=minute)
                            producer.send(self.topic, format_event(event).encode())
                        rating = RateEvent(time=datetime.utcnow() + timedelta(seconds=2), user_id=user, movie_id=movie,
                                           rating=rng.randint(3, 5))
                        producer.send(self.topic, format_event(rating).encode())
                for i in range(bad_user_ids):
                    client.get(f"/recommend/not-a-user-{i}")  # client errors: 4xx, reason bad_user_id
            producer.send(self.topic, b"garbage line, rejected by ingest")
            producer.flush(timeout=15)
        finally:
            producer.close(timeout=5)
        return answered

    def stop(self, job: str) -> None:
        proc = self.procs[job]
        if job == "movierec-predictor":
            stop_instance(proc)
        elif proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for job in self.procs:
            self.stop(job)
        for f in self.logs:
            f.close()

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                         for p in sorted(self.tmp.glob("*.log")))


@pytest.fixture(scope="module")
def monitored(kafka, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitoring")
    webhook = WebhookReceiver()
    url_file = tmp / "slack-webhook-url"
    url_file.write_text(f"{webhook.url}/services/T000/B000/XXXX\n")
    alertmanager = _start(AlertmanagerServer(alertmanager_config(url_file)))
    platform = None
    prometheus = None
    try:
        platform = Platform(kafka, tmp)
        prometheus = _start(PrometheusServer(prometheus_config(platform.targets(), f"127.0.0.1:{alertmanager.port}"),
                                             rules_with_1s_intervals()))
        assert platform.users_request_and_watch(400) > 300
        yield platform, prometheus, alertmanager, webhook
    finally:
        if platform is not None:
            platform.close()
        for server in (prometheus, alertmanager):
            if server is not None:
                server.close()
        webhook.close()


def test_prometheus_scrapes_every_service(monitored):
    platform, prometheus, _, _ = monitored

    def all_up():
        targets = prometheus.targets()
        return len(targets) == 3 and all(t["health"] == "up" for t in targets) and targets
    _wait("every target up", all_up, 30)
    for job in platform.ports:
        assert prometheus.query(f'up{{job="{job}"}} == 1'), job


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads((MONITORING / "grafana-dashboard.json").read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def recording_rules() -> list[str]:
    doc = yaml.safe_load((MONITORING / "recording-rules.yaml").read_text())
    return [r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r]


def test_every_dashboard_query_and_recording_rule_returns_data(monitored, capsys):
    platform, prometheus, _, _ = monitored
    queries = [("recording rule", record) for record in recording_rules()] + dashboard_queries()
    assert len(queries) > 20

    def missing():
        # keep the traffic going so that every rate() window holds fresh samples
        platform.users_request_and_watch(40, seed=int(time.time()))
        return [(title, expr) for title, expr in queries
                if not no_data_reason(expr) and not prometheus.query(expr)] or None

    try:
        _wait("data for every query", lambda: not missing(), 90, every=2)
    except AssertionError:
        lines = "\n".join(f"  {title}: {expr}" for title, expr in missing() or [])
        raise AssertionError(f"queries without data:\n{lines}\n{platform.log_tails()}") from None
    report = []
    for title, expr in queries:
        reason = no_data_reason(expr)
        samples = prometheus.query(expr)
        if reason:
            assert not samples, f"{title}: {expr} has data now: drop its NO_DATA_HERE entry ({reason})"
        report.append(f"{'DATA ' if samples else 'EMPTY'} {title}: {expr.splitlines()[0][:90]}"
                      + (f"  -- {reason}" if reason else f"  ({len(samples)} series)"))
    with capsys.disabled():
        print("\nmonitoring: panels and rules against the running platform\n" + "\n".join(report))


def test_a_stopped_service_fires_an_alert_that_reaches_the_slack_webhook(monitored):
    platform, prometheus, alertmanager, webhook = monitored
    _wait("ingest scraped", lambda: prometheus.query('up{job="movierec-ingest"} == 1'), 30)
    platform.stop("movierec-ingest")

    def firing():
        return [a for a in prometheus.alerts() if a["labels"]["alertname"] == "MovierecServiceDown"
                and a["labels"].get("job") == "movierec-ingest" and a["state"] == "firing"]
    (alert,) = _wait("MovierecServiceDown firing in Prometheus", firing, 60)
    assert alert["labels"]["severity"] == "page"

    def delivered():
        return [m for m in webhook.messages() if "MovierecServiceDown" in json.dumps(m["body"])
                and "movierec-ingest target" in json.dumps(m["body"])]
    (message, *_) = _wait("the alert delivered to the Slack webhook", delivered, 60)
    assert message["path"] == "/services/T000/B000/XXXX"
    assert message["content_type"].startswith("application/json")
    body = message["body"]
    # Slack's incoming-webhook payload as Alertmanager's slack_config sends it
    assert body["channel"] == "#movierec-alerts"
    (attachment,) = body["attachments"]
    assert attachment["title"] == "[FIRING] MovierecServiceDown (page)"
    assert "movierec-ingest target 127.0.0.1:" in attachment["text"] and "is down" in attachment["text"]
    assert attachment["color"] in ("danger", "good", "warning") or attachment["color"].startswith("#")
    assert any(a["labels"]["alertname"] == "MovierecServiceDown" for a in alertmanager.alerts())
