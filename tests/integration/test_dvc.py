"""`dvc repro` runs the project's dvc.yaml end to end, and `dvc push` / `dvc pull` move its data
through a real S3 server (SeaweedFS), the way they would through the cluster's MinIO.

The project's dvc.yaml, params.yaml and the code folders its stages depend on are copied into a
fresh git + DVC repository in tmp_path, with a small simulated event log as input and a remote on
the test server's bucket; the `movierec` commands are the installed project's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.core.store import S3Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGES = ["ingest", "preprocess", "train", "evaluate"]


def run(args: list[str], cwd: Path, timeout: int = 240) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
           "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture
def dvc_repo(tmp_path, s3, s3_env):
    """A git + DVC repository holding the project's pipeline, an event log and an S3 remote."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copy(ROOT / "params.yaml", repo)
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for dep in stage.get("deps", []):
            if dep.startswith("components/") and not (repo / dep).exists():
                (repo / dep).parent.mkdir(parents=True, exist_ok=True)
                if (ROOT / dep).is_dir():
                    shutil.copytree(ROOT / dep, repo / dep, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / dep, repo / dep)
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "test@example.invalid"], repo)
    run(["git", "config", "user.name", "test"], repo)
    run([str(BIN / "dvc"), "init", "-q"], repo)
    shutil.copy(ROOT / ".dvcignore", repo)
    # the project's remote section, pointed at the test server's bucket
    config = (ROOT / ".dvc" / "config").read_text()
    assert 'remote "minio"' in config and "endpointurl" in config
    S3Store(s3_env)  # creates the bucket
    run([str(BIN / "dvc"), "remote", "add", "-d", "minio", f"s3://{s3_env}/dvc"], repo)
    run([str(BIN / "dvc"), "remote", "modify", "minio", "endpointurl", s3.endpoint], repo)
    run([str(BIN / "dvc"), "remote", "modify", "minio", "region", "us-east-1"], repo)
    (repo / "data").mkdir()
    run([str(BIN / "movierec"), "simulate", "--to", "file:data/events.log", "--users", "150", "--movies", "80",
         "--days", "8", "--sessions-per-day", "50", "--start", "2026-03-01", "--seed", "3"], repo)
    run([str(BIN / "dvc"), "add", "-q", "data/events.log"], repo)
    return repo, s3_env


def test_repro_push_pull(dvc_repo):
    repo, bucket = dvc_repo
    dvc = str(BIN / "dvc")

    # -- repro: every stage runs, metrics are JSON DVC can read, cards carry the data hash
    run([dvc, "repro"], repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert list(lock) == STAGES
    metrics = json.loads(run([dvc, "metrics", "show", "--json"], repo))
    shown = json.dumps(metrics)
    assert "ndcg@20" in shown and "svdpp" in shown and "popularity" in shown
    evaluation = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert {"svd", "svdpp", "popularity"} <= set(evaluation)
    assert 0.0 <= evaluation["svd"]["ndcg@20"] <= 1.0 and "by_activity" in evaluation["svd"]
    (dataset_out,) = [o for o in lock["preprocess"]["outs"] if o["path"] == "data/dataset"]
    cards = [json.loads(p.read_text()) for p in (repo / "data" / "models").glob("*/card.json")]
    assert {c["algorithm"] for c in cards} == {"svd", "svdpp", "als"}
    assert all(c["dvc_data_hash"] == dataset_out["md5"] for c in cards), [c["dvc_data_hash"] for c in cards]
    assert dataset_out["md5"].endswith(".dir")
    assert "didn't change" in run([dvc, "repro"], repo) or "up to date" in run([dvc, "status"], repo)

    # -- push: the cache reaches the S3 bucket
    run([dvc, "push"], repo)
    pushed = S3Store(bucket, "dvc").list("")
    assert len(pushed) >= 10, pushed

    # -- pull: a clone without cache or outputs gets everything back, identical
    before = {p.relative_to(repo): p.read_bytes() for p in (repo / "data").rglob("*") if p.is_file()
              and ".gitignore" not in p.name}
    shutil.rmtree(repo / ".dvc" / "cache")
    for out in ("data/store", "data/dataset", "data/models", "data/evaluation.json", "data/events.log"):
        path = repo / out
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    run([dvc, "pull"], repo)
    after = {p.relative_to(repo): p.read_bytes() for p in (repo / "data").rglob("*") if p.is_file()
             and ".gitignore" not in p.name}
    assert after == before
    status = run([dvc, "status", "--json"], repo)
    assert json.loads(status) == {}, status

    # -- a changed file a stage imports makes that stage stale, though dvc.yaml never names the file
    for changed, expected in (("components/training/report.py", {"preprocess", "train", "evaluate"}),
                              ("components/core/store.py", set(STAGES))):
        original = (repo / changed).read_text()
        (repo / changed).write_text(original + "\n# changed\n")
        stale = json.loads(run([dvc, "status", "--json"], repo))
        assert set(stale) == expected, (changed, stale)
        (repo / changed).write_text(original)
    assert json.loads(run([dvc, "status", "--json"], repo)) == {}

    # -- a changed hyper-parameter makes train (and what follows) stale, nothing before it
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["svd"]["n_epochs"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    stale = json.loads(run([dvc, "status", "--json"], repo))
    assert "train" in stale and "ingest" not in stale and "preprocess" not in stale
