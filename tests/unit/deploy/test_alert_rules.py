"""Monitoring as code: the rules pass promtool, every alert fires and stays silent in a promtool test,
the dashboard's queries parse, and Alertmanager reads the Slack webhook from a mounted Secret.

promtool comes from Debian's `prometheus` package (`make test` installs it). Without it these
tests FAIL: an unchecked alert rule is exactly what this platform promised not to ship.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "manifests" / "monitoring"
RULES = [MONITORING / "recording-rules.yaml", MONITORING / "alerts.yaml"]
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*_test.yaml"))
REQUIRED_ALERTS = {
    "MovierecServiceDown", "MovierecAvailabilityLow", "MovierecLatencyP99High", "MovierecErrorRateHigh",
    "MovierecConsumerLagGrowing", "MovierecNoRecentTraining", "MovierecHitRateBelowBaseline", "MovierecInputDrift",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: install Debian's `prometheus` package "
                    "(apt-get install -y --no-install-recommends prometheus); `make test` does")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)


def alerts() -> dict[str, dict]:
    doc = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_rules_pass_promtool_check(promtool):
    out = run(promtool, "check", "rules", *map(str, RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass(promtool):
    assert PROMTOOL_TESTS, "no promtool test files under tests/promtool/"
    out = run(promtool, "test", "rules", *map(str, PROMTOOL_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_required_alert_exists_with_severity_and_summary():
    found = alerts()
    assert REQUIRED_ALERTS <= set(found)
    for name, rule in found.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"], name


def test_every_alert_has_a_firing_and_a_silent_promtool_case():
    fires, silent = set(), set()
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    for name in alerts():
        assert name in fires, f"{name}: no promtool case where it fires"
        assert name in silent, f"{name}: no promtool case where it stays silent"


def dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def test_dashboard_queries_parse(promtool, tmp_path):
    """Every panel query, wrapped as a recording rule, passes promtool's PromQL parser."""
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e}
                                                        for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = run(promtool, "check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_covers_service_online_ingest_and_host():
    text = json.dumps(dashboard())
    for needle in ("movierec_predictor_requests_total", "histogram_quantile(0.99", "movierec:predictor_error_ratio",
                   "movierec_predictor_canary_percent", "movierec_online_hit_rate", "movierec_ingest_consumer_lag",
                   "node_cpu_seconds_total", "node_memory_MemAvailable_bytes",
                   "movierec_pipeline_last_success_timestamp_seconds"):
        assert needle in text, needle
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_alertmanager_routes_to_slack_with_the_url_from_a_secret_file():
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    assert config["global"]["slack_api_url_file"].startswith("/etc/alertmanager-secrets/")
    receivers = {r["name"]: r for r in config["receivers"]}
    routed = {config["route"]["receiver"], *(r["receiver"] for r in config["route"].get("routes", []))}
    assert routed <= set(receivers)
    for receiver in receivers.values():
        for slack in receiver["slack_configs"]:
            assert "api_url" not in slack, "the webhook URL belongs in the Secret, not in the config"
    secret = yaml.safe_load((MONITORING / "alertmanager-slack-secret.yaml").read_text())
    assert secret["kind"] == "Secret" and "hooks.slack.com" not in json.dumps(secret)
    assert Path(config["global"]["slack_api_url_file"]).name in secret["stringData"]
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert "alertmanager-slack-secret.yaml" not in kustomization.get("resources", [])


def test_rule_metric_names_are_the_ones_online_eval_exports():
    from components.online.report import prometheus_text

    est = {"value": 0.3, "n": 500, "low": 0.28, "high": 0.32, "method": "wilson"}
    version = {"requests": 600, "hits": 150, **{k: est for k in (
        "hit_rate", "availability", "personalized_share", "watched_minutes_per_recommendation",
        "mean_rating_of_recommended", "latency_p50_seconds", "latency_p95_seconds", "latency_p99_seconds")}}
    text = prometheus_text({"recent": {"v1": version}, "drift": {"users": {"psi": 0.1, "unknown_share": 0.2, "n": 9}},
                            "canary": {"canary": "v2", "decision": "keep_collecting"},
                            "consumed_until": "2026-03-18T12:00:00", "evaluated_at": "2026-03-18T12:30:00",
                            "last_training_success": "2026-03-18T03:00:00"}).decode()
    rules = (MONITORING / "alerts.yaml").read_text() + (MONITORING / "recording-rules.yaml").read_text()
    for name in ("movierec_online_hit_rate_ci_high", "movierec_online_samples", "movierec_online_drift_score",
                 "movierec_pipeline_last_success_timestamp_seconds", "movierec_online_hit_rate"):
        assert name in rules and f"\n{name}" in text, name
    assert 'movierec_online_samples{figure="hit_rate",version="v1"} 500.0' in text


def test_alertmanager_config_passes_amtool(tmp_path):
    """amtool comes with Debian's prometheus-alertmanager (make test-tools installs it)."""
    amtool = shutil.which("amtool")
    if not amtool:
        pytest.fail("amtool not found: install Debian's `prometheus-alertmanager` package; `make test-tools` does")
    out = run(amtool, "check-config", str(MONITORING / "alertmanager.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    broken = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    broken["route"]["receiver"] = "nobody"
    path = tmp_path / "alertmanager-broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert run(amtool, "check-config", str(path)).returncode != 0, "amtool accepts an unknown receiver"
