"""params.yaml is checked against one schema before any work starts.

The schema's checks on dicts, then the real `movierec` command in a subprocess for each kind of
mistake: one line on stderr naming the key and what it accepts, a non-zero exit, no traceback,
and nothing written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.core.errors import NotFound, UserError
from components.core.params import ALGORITHMS, DEFAULTS, complete, load_params, section, validate

ROOT = Path(__file__).resolve().parents[3]
MOVIEREC = Path(sys.executable).parent / "movierec"


def test_defaults_are_the_project_file():
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == DEFAULTS
    assert load_params(ROOT / "params.yaml") == DEFAULTS


def test_partial_params_are_completed_and_typed():
    params = complete({"train": {"svd": {"n_factors": 8.0}}, "preprocess": {"valid_days": 2}})
    assert params["train"]["svd"]["n_factors"] == 8 and isinstance(params["train"]["svd"]["n_factors"], int)
    assert params["train"]["svd"]["n_epochs"] == DEFAULTS["train"]["svd"]["n_epochs"]
    assert params["preprocess"]["valid_days"] == 2
    assert section(None, "train", "svdpp") == DEFAULTS["train"]["svdpp"]
    assert set(ALGORITHMS) == {"svd", "svdpp", "als", "bpr", "popularity", "random"}


@pytest.mark.parametrize("params, message", [
    ({"preprocess": {"min_user_rating": 3}}, "unknown key preprocess.min_user_rating (allowed here: min_user_movies"),
    ({"preprocess": {"min_user_ratings": 2}},
     "preprocess.min_user_ratings was renamed preprocess.min_user_movies (it counts the movies a user rated or watched"),
    ({"preprocess": {"min_movie_ratings": 2}}, "preprocess.min_movie_ratings was renamed preprocess.min_movie_users"),
    ({"evaluat": {}}, "unknown key evaluat (allowed here: preprocess, train, evaluate)"),
    ({"train": {"svd": {"n_factors": -5}}}, "train.svd.n_factors = -5 is out of range (allowed: >= 1 and <= 10000)"),
    ({"preprocess": {"valid_fraction": 1.0}}, "preprocess.valid_fraction = 1.0 is out of range (allowed: >= 0 and < 1)"),
    ({"evaluate": {"canary_percent": 0}}, "evaluate.canary_percent = 0 is out of range (allowed: > 0 and <= 100)"),
    ({"train": {"algorithms": ["svd", "bprr"]}}, "train.algorithms: unknown algorithm 'bprr' (allowed: svd, svdpp"),
    ({"train": {"algorithms": []}}, "train.algorithms"),
    ({"evaluate": {"k": 10}}, "primary_metric 'ndcg@20' is not one of precision@10, recall@10, ndcg@10"),
    ({"train": {"svd": {"n_factors": "many"}}}, "train.svd.n_factors: input should be a valid integer"),
    ({"train": {"svdpp": {"cache_ratings": "sometimes"}}}, "train.svdpp.cache_ratings: input should be a valid boolean"),
    ({"train": 3}, "train: input should be a valid dictionary"),
    (["preprocess"], "expected a mapping of sections"),
])
def test_each_mistake_names_the_key_and_what_it_accepts(params, message):
    with pytest.raises(UserError) as error:
        validate(params, "params.yaml")
    assert str(error.value).startswith("params.yaml: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_several_mistakes_are_reported_together():
    with pytest.raises(UserError) as error:
        validate({"train": {"svd": {"n_factors": 0, "n_epoch": 3}}})
    assert "train.svd.n_factors = 0" in str(error.value) and "unknown key train.svd.n_epoch" in str(error.value)


def test_file_errors(tmp_path):
    with pytest.raises(NotFound, match="does not exist"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  svd: {n_factors: 3\n")
    with pytest.raises(UserError, match=r"bad.yaml: not valid YAML at line \d+, column \d+"):
        load_params(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_params(empty) == DEFAULTS


# -- the real command -------------------------------------------------------------------------------

MISTAKES = {
    "misspelled key": ("preprocess:\n  min_user_rating: 3\n", "unknown key preprocess.min_user_rating"),
    "out of range": ("train:\n  svd:\n    n_factors: -5\n", "train.svd.n_factors = -5 is out of range (allowed: >= 1"),
    "unknown algorithm": ("train:\n  algorithms: [svd, bprr]\n", "unknown algorithm 'bprr' (allowed: svd, svdpp"),
    "malformed YAML": ("train:\n  svd: {n_factors: 3\n  svdpp: [\n", "not valid YAML at line"),
}


def movierec(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("MOVIEREC_DEBUG", "MOVIEREC_PARAMS")}
    return subprocess.run([str(MOVIEREC), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**environment, **env})


def assert_one_line(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("movierec: ") and message in lines[0], done.stderr


@pytest.mark.parametrize("mistake", MISTAKES)
def test_pipeline_refuses_to_compile(tmp_path, mistake):
    text, message = MISTAKES[mistake]
    (tmp_path / "params.yaml").write_text(text)
    done = movierec(["pipeline", "compile", "--params", "params.yaml", "--output", "pipeline.yaml"], tmp_path)
    assert_one_line(done, message)
    assert not (tmp_path / "pipeline.yaml").exists()


def test_pipeline_refuses_to_run(tmp_path):
    (tmp_path / "params.yaml").write_text(MISTAKES["out of range"][0])
    done = movierec(["pipeline", "run", "--source", "file:events.log", "--store", "store",
                     "--pipeline-root", "root"], tmp_path)
    assert_one_line(done, MISTAKES["out of range"][1])
    assert not (tmp_path / "root").exists() and not (tmp_path / "store").exists()


def test_train_refuses_before_any_work(tmp_path):
    """An unknown algorithm used to train the others first; now nothing starts (no dataset is read)."""
    (tmp_path / "bad.yaml").write_text(MISTAKES["unknown algorithm"][0])
    done = movierec(["train", "--dataset", "no-such-dataset", "--out", "models"], tmp_path, MOVIEREC_PARAMS="bad.yaml")
    assert_one_line(done, MISTAKES["unknown algorithm"][1])
    assert not (tmp_path / "models").exists()


def test_unknown_algorithm_flag_refused_before_any_work(tmp_path):
    done = movierec(["train", "--algorithm", "svd", "--algorithm", "bprr", "--dataset", "none", "--out", "m"], tmp_path)
    assert_one_line(done, "--algorithm: unknown algorithm 'bprr' (allowed: svd, svdpp, als, bpr, popularity, random)")
    assert not (tmp_path / "m").exists()


def test_missing_params_file_and_debug_traceback(tmp_path):
    done = movierec(["pipeline", "compile", "--params", "nowhere.yaml", "--output", "p.yaml"], tmp_path)
    assert_one_line(done, "params file nowhere.yaml does not exist")
    (tmp_path / "params.yaml").write_text(MISTAKES["out of range"][0])
    debug = movierec(["pipeline", "compile", "--output", "p.yaml"], tmp_path, MOVIEREC_DEBUG="1")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "UserError" in debug.stderr
