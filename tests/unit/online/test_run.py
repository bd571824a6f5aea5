"""Running online evaluation: results in the store, watermark, report, follow mode, drift, provenance, CLI."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from components.core import layout, rollout
from components.core.events import RecommendationEvent, WatchEvent, format_event
from components.core.model_artifact import FactorModel, ModelCard
from components.core.store import LocalStore
from components.online.drift import input_drift, psi
from components.online.join import frames_from_log
from components.online.run import LogTail, follow, last_training_success, run_once, write_watermark
from components.online.trace import TraceError, trace
from tests.servers import free_port

T0 = datetime(2026, 3, 18, 12, 0, 0)
MOVIES = [f"movie+{i}+2000" for i in range(30)]


def model(n_users=50, seen_per_user=3) -> FactorModel:
    rng = np.random.default_rng(0)
    indptr = np.arange(n_users + 1, dtype=np.int64) * seen_per_user
    return FactorModel(global_mean=3.5, user_bias=np.zeros(n_users), item_bias=rng.normal(size=30),
                       user_factors=rng.normal(size=(n_users, 4)), item_factors=rng.normal(size=(30, 4)),
                       user_ids=np.arange(1, n_users + 1), movie_ids=np.array(MOVIES), seen_indptr=indptr,
                       seen_indices=rng.integers(0, 30, n_users * seen_per_user).astype(np.int32),
                       popular=np.arange(30, dtype=np.int32))


def log_lines(n=200, canary_share=0.5) -> list[str]:
    lines = []
    for i in range(n):
        user = i % 60 + 1
        version = "v2" if rollout.in_canary(user, canary_share * 100) else "v1"
        t = T0 + timedelta(seconds=20 * i)
        lines.append(format_event(RecommendationEvent(t, user, f"p:8080@{version}", 200, tuple(MOVIES[:5]), 15)))
        if i % 3 == 0:
            lines.append(format_event(WatchEvent(t + timedelta(minutes=2), user, MOVIES[i % 5], 0)))
    lines.append(format_event(WatchEvent(T0 + timedelta(hours=4), 999, MOVIES[0], 0)))
    return lines


@pytest.fixture()
def store(tmp_path):
    s = LocalStore(tmp_path / "store")
    for version in ("v1", "v2"):
        model().save(s, ModelCard(version=version, algorithm="svd", trained_at=f"2026-03-1{version[1]}T03:00:00",
                                  code_commit="c0ffee", data_snapshot="snap-1", pipeline_run="run-7",
                                  metrics={"ndcg@20": 0.2}, gate={"candidate": True, "reasons": ["ok"]}))
    rollout.set_stable(s, "v1")
    rollout.start_canary(s, "v2", 50)
    return s


@pytest.fixture()
def log_file(tmp_path):
    path = tmp_path / "events.log"
    path.write_text("\n".join(log_lines()) + "\n")
    return path


def test_run_once_records_results_watermark_and_report(store, log_file, tmp_path):
    result = run_once(frames_from_log(f"file:{log_file}"), store, report_dir=tmp_path / "report")
    assert set(result["versions"]) == {"v1", "v2"}
    v1_users = [i % 60 + 1 for i in range(200) if not rollout.in_canary(i % 60 + 1, 50)]
    share = np.mean([u <= 50 for u in v1_users])          # the model knows users 1..50
    assert result["versions"]["v1"]["personalized_share"]["value"] == pytest.approx(share)
    assert store.get_json(layout.ONLINE_WATERMARK) == {"consumed_until": "2026-03-18T15:30:00"}
    assert store.get_json(layout.ONLINE_LATEST)["canary"]["decision"] == "keep_collecting"
    assert store.exists(layout.online_canary_key("v2"))
    assert result["last_training_success"] == "2026-03-12T03:00:00"
    for name in ("online-eval.json", "report.html", "report.md", "online-metrics.png", "online-metrics.prom"):
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    assert "movierec_pipeline_last_success_timestamp_seconds" in (tmp_path / "report" / "online-metrics.prom").read_text()
    assert result["drift"]["movies"]["psi"] is not None


def test_watermark_never_moves_back(tmp_path):
    s = LocalStore(tmp_path)
    write_watermark(s, pd.Timestamp("2026-03-18T12:00:00"))
    assert write_watermark(s, pd.Timestamp("2026-03-18T11:00:00")) == "2026-03-18T12:00:00"
    assert s.get_json(layout.ONLINE_WATERMARK)["consumed_until"] == "2026-03-18T12:00:00"


FORGED = format_event(WatchEvent(datetime(2099, 1, 1), 4242, MOVIES[0], 0))


def test_one_event_from_the_future_moves_neither_now_nor_the_watermark(store, tmp_path):
    path = tmp_path / "events.log"
    lines = log_lines()
    path.write_text("\n".join([*lines[:50], FORGED, *lines[50:]]) + "\n")
    result = run_once(frames_from_log(f"file:{path}"), store)
    assert result["data_until"] == "2026-03-18T16:00:00"
    assert store.get_json(layout.ONLINE_WATERMARK) == {"consumed_until": "2026-03-18T15:30:00"}
    assert set(result["versions"]) == {"v1", "v2"}


def test_following_a_log_with_a_forged_future_line_still_sees_the_real_events(store, tmp_path):
    path = tmp_path / "events.log"
    path.write_text("\n".join([FORGED, *log_lines()]) + "\n")
    result = follow(LogTail(str(path)), store, interval=0.01, cycles=2)
    assert set(result["versions"]) == {"v1", "v2"}
    assert result["data_until"] == "2026-03-18T16:00:00"


def test_the_watermark_never_passes_the_clock(tmp_path):
    s = LocalStore(tmp_path)
    now = datetime(2026, 3, 20, 8, 0, 0)
    assert write_watermark(s, pd.Timestamp("2099-01-01T00:00:00"), now=now) == "2026-03-20T08:00:00"
    s.put_json(layout.ONLINE_WATERMARK, {"consumed_until": "2099-01-01T00:00:00"})  # written by an older version
    assert write_watermark(s, pd.Timestamp("2026-03-19T00:00:00"), now=now) == "2026-03-19T00:00:00"
    assert s.get_json(layout.ONLINE_WATERMARK)["consumed_until"] == "2026-03-19T00:00:00"


def test_log_tail_reads_complete_lines_once(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"a\nb\npart")
    tail = LogTail(f"file:{path}")
    assert tail.read() == [b"a", b"b"]
    assert tail.read() == []
    with open(path, "ab") as f:
        f.write(b"ial\nc\n")
    assert tail.read() == [b"partial", b"c"]
    assert LogTail(str(tmp_path / "missing")).read() == []


def test_follow_serves_metrics_and_stops_after_cycles(store, log_file):
    port = free_port()
    result = follow(LogTail(str(log_file)), store, interval=0.01, cycles=2, metrics_port=port)
    assert result is not None and result["canary"]["canary"] == "v2"
    with pytest.raises(OSError):   # the metrics server is shut down when follow returns
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_metrics_server_binds_the_address_it_is_given():
    from components.online.run import _serve_metrics

    port = free_port()
    server = _serve_metrics(port, "127.0.0.1")
    try:
        assert server.server_address == ("127.0.0.1", port)
        server.body = b"movierec_online_up 1\n"
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read() == server.body
    finally:
        server.shutdown()
        server.server_close()


def test_psi_and_input_drift():
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.25
    m = model()
    recs = pd.DataFrame({"user_id": np.r_[np.arange(1, 51), [777, 778]]})
    watches = pd.DataFrame({"movie_id": MOVIES + ["unknown+1999"]})
    d = input_drift(m, recs, watches)
    assert d["users"]["unknown_share"] == pytest.approx(2 / 52)
    assert d["movies"]["unknown_share"] == pytest.approx(1 / 31)
    shifted = input_drift(m, pd.DataFrame({"user_id": [1] * 200}), pd.DataFrame({"movie_id": [MOVIES[29]] * 200}))
    assert shifted["users"]["psi"] > 0.25


def test_trace_from_a_line_and_from_a_version(store):
    line = log_lines(1)[0]
    t = trace(store, line=line)
    assert t["version"] in {"v1", "v2"} and t["model_card"]["code_commit"] == "c0ffee"
    assert t["model_card"]["pipeline_run"] == "run-7" and t["model_card"]["data_snapshot"] == "snap-1"
    assert trace(store, version="v2")["role_now"] == "canary"
    with pytest.raises(TraceError, match="not a recommendation"):
        trace(store, line=format_event(WatchEvent(T0, 1, MOVIES[0], 0)))
    with pytest.raises(TraceError, match="names no model version"):
        trace(store, line=format_event(RecommendationEvent(T0, 1, "legacy", 200, ("a",), 5)))
    with pytest.raises(TraceError, match="no model card"):
        trace(store, version="v9")


def test_last_training_success_without_models(tmp_path):
    assert last_training_success(LocalStore(tmp_path)) is None


def test_cli_online_eval_and_trace(store, log_file, tmp_path):
    from movierec.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["online-eval", "--log", f"file:{log_file}", "--store", store.uri,
                              "--report", str(tmp_path / "r"), "--window", "30m"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    assert printed["canary"]["decision"] == "keep_collecting" and set(printed["versions"]) == {"v1", "v2"}
    out = runner.invoke(app, ["trace", log_lines(1)[0], "--store", store.uri])
    assert out.exit_code == 0 and "c0ffee" in out.output
    out = runner.invoke(app, ["trace", "garbage", "--store", store.uri])
    assert out.exit_code == 1


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_kubeflow_component_runs_the_bounded_evaluation(store, log_file, tmp_path):
    """`components.steps.online_eval` under kfp.local reads the store's snapshots and returns the decision."""
    from kfp import local

    from components.ingest.run import ingest
    from components.steps import online_eval

    ingest(f"file:{log_file}", store)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    task = online_eval(store=store.uri, window="30m", auto=False)
    assert task.outputs["Output"] == "keep_collecting"
    assert (tmp_path / "kfp").exists()
    assert (Path(task.outputs["report"].path) / "online-eval.json").exists()


def test_follow_from_store_snapshots(store, log_file):
    from components.ingest.run import ingest

    ingest(f"file:{log_file}", store)
    result = follow(None, store, interval=0.01, cycles=1)
    assert set(result["versions"]) == {"v1", "v2"}
    assert store.exists(layout.ONLINE_WATERMARK)


def test_follow_keeps_everything_since_the_canary_started(store, tmp_path):
    """A canary older than the kept horizon is analysed on all its answers, not on a sliding window."""
    lines = log_lines(200)                       # 200 answers over about 66 minutes, both versions
    lines.append(format_event(WatchEvent(T0 + timedelta(days=3), 999, MOVIES[0], 0)))   # three days later
    path = tmp_path / "late.log"
    path.write_text("\n".join(lines) + "\n")
    result = follow(LogTail(str(path)), store, interval=0.01, cycles=1, keep=timedelta(hours=1))
    a = result["canary"]
    assert pd.Timestamp(a["since"]) <= T0 + timedelta(minutes=1)
    assert a["arms"]["canary"]["requests"] + a["arms"]["stable"]["requests"] == 200


def test_report_shows_the_decision_and_plots_the_canary(store, log_file, tmp_path):
    result = run_once(frames_from_log(str(log_file)), store, report_dir=tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert result["canary"]["decision"] in text and "users" in text
    assert (tmp_path / "report" / "canary-v2.png").exists()
