"""The mistakes of a user's first hour, through the real `movierec` command (a subprocess each).

Every one ends with one line on stderr that says what to do, a non-zero exit and no traceback;
nothing is created, deleted or deployed on the way.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from components.core import rollout
from components.core.model_artifact import ModelCard
from components.core.store import open_store
from tests.unit.core.test_model_artifact import make_model

MOVIEREC = str(Path(sys.executable).with_name("movierec"))


def movierec(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(cwd),
           "MOVIEREC_LOG_LEVEL": "WARNING"}
    return subprocess.run([MOVIEREC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line(done: subprocess.CompletedProcess, *expected: str) -> str:
    """Exactly one line on stderr, starting 'movierec: ' and holding each of `expected`."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("movierec: ")
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def published(tmp_path) -> Path:
    """A store with three versions: 'good' (gate passed, stable), 'bad' (gate rejected), 'raw' (never gated)."""
    path = tmp_path / "store"
    store = open_store(path)
    gate = {"primary_metric": "ndcg@20", "value": 0.31, "baseline": 0.20, "margin": 0.01}
    make_model().save(store, ModelCard(version="good", algorithm="svd",
                                       gate={**gate, "candidate": True, "reasons": ["beats the baseline"]}))
    make_model().save(store, ModelCard(version="bad", algorithm="popularity",
                                       gate={**gate, "value": 0.12, "candidate": False,
                                             "reasons": ["does not beat the popularity baseline"]}))
    make_model().save(store, ModelCard(version="raw", algorithm="svd"))
    rollout.set_stable(store, "good")
    return path


def test_a_mistyped_store_is_an_error_not_a_new_store(tmp_path):
    typo = tmp_path / "stroe"
    for args in (["rollout", "status"], ["models"], ["online-eval"], ["trace", "--version", "v1"],
                 ["retention", "--keep-days", "3"], ["serve", "--port", "0"], ["preprocess"]):
        assert_one_line(movierec(*args, "--store", str(typo), cwd=tmp_path), "no artifact store at", str(typo))
    assert not typo.exists()


def test_online_eval_on_a_log_that_does_not_exist(tmp_path, published):
    assert_one_line(movierec("online-eval", "--log", "file:/nonexistent/events.log", "--store", str(published),
                             cwd=tmp_path), "no event log at /nonexistent/events.log")


def test_online_eval_window_that_is_not_a_duration(tmp_path, published):
    assert_one_line(movierec("online-eval", "--window", "30x", "--store", str(published), cwd=tmp_path),
                    "--window", "30x")


def test_pipeline_run_on_a_log_that_does_not_exist(tmp_path):
    assert_one_line(movierec("pipeline", "run", "--source", "file:events.lgo", "--store", str(tmp_path / "s"),
                             cwd=tmp_path), "no event log at", "events.lgo", "movierec simulate")


def test_retention_with_a_negative_window(tmp_path, published):
    assert_one_line(movierec("retention", "--keep-days", "-1", "--store", str(published), cwd=tmp_path),
                    "--keep-days")


def test_a_missing_option_is_one_line_with_the_help_to_read(tmp_path):
    line = assert_one_line(movierec("rollout", "canary", cwd=tmp_path), "Missing argument")
    assert "movierec rollout canary --help" in line


def test_a_version_that_is_not_published_names_the_published_ones(tmp_path, published):
    assert_one_line(movierec("rollout", "canary", "svd-typo", "--store", str(published), cwd=tmp_path),
                    "'svd-typo' is not published", "bad, good, raw")


def test_canary_rejected_by_its_gate_needs_force(tmp_path, published):
    assert_one_line(movierec("rollout", "canary", "bad", "--store", str(published), cwd=tmp_path),
                    "gate rejected bad", "does not beat the popularity baseline", "--force")
    assert rollout.load(open_store(published)).canary is None
    done = movierec("rollout", "canary", "bad", "--force", "--store", str(published), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning: deploying bad although its publish gate rejected it" in done.stderr
    state = rollout.load(open_store(published))
    assert state.canary == "bad" and "forced past the publish gate" in state.history[-1]["reason"]


def test_models_lists_versions_with_gate_and_rollout(tmp_path, published):
    rollout.start_canary(open_store(published), "raw", 20)
    done = movierec("models", "--store", str(published), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:4]}
    assert "passed" in rows["good"] and "stable" in rows["good"] and "ndcg@20 0.3100 (0.2000)" in rows["good"]
    assert "rejected" in rows["bad"] and rows["bad"].rstrip().endswith("-")
    assert "never gated" in rows["raw"] and "canary 20%" in rows["raw"]
    listed = json.loads(movierec("models", "--json", "--store", str(published), cwd=tmp_path).stdout)
    assert [r["version"] for r in listed] == ["bad", "good", "raw"]


def test_serve_on_a_port_held_by_another_program(tmp_path, published):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert_one_line(movierec("serve", "--store", str(published), "--port", str(port), cwd=tmp_path),
                        f"cannot listen on 127.0.0.1:{port}", "--port")


def test_serve_on_a_store_with_nothing_deployed_gives_up(tmp_path):
    empty = tmp_path / "empty"
    open_store(empty)
    done = movierec("serve", "--store", str(empty), "--port", "0", "--wait-seconds", "0.5", cwd=tmp_path)
    assert_one_line(done, "no model version is deployed", "rollout stable VERSION")
    assert "waiting up to 0.5 s" in done.stdout  # while it waits, it says so


def test_demo_refuses_to_empty_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("months of work")
    assert_one_line(movierec("demo", "--output", str(precious), cwd=tmp_path), "choose a new or empty folder")
    assert (precious / "chapter1.tex").read_text() == "months of work"
