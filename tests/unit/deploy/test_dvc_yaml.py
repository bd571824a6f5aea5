"""dvc.yaml stays in step with the code: the commands and options its stages call exist, its code
dependencies exist, its params sections are in params.yaml, and it mirrors the Kubeflow steps.
(tests/integration/test_dvc.py runs it for real.)"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import typer.main
import yaml

from movierec.cli import app

ROOT = Path(__file__).resolve().parents[3]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def movierec_calls(cmd: str) -> list[list[str]]:
    """Each `movierec ...` invocation of a stage command, as words (shell substitutions dropped)."""
    cmd = re.sub(r"\$\(.*?\)\)?", " ", cmd.replace("\n", " "))
    calls = []
    for part in re.split(r"&&|;|\|", cmd):
        words = shlex.split(part)
        if words and words[0] == "movierec":
            calls.append(words[1:])
    return calls


def test_stages_mirror_the_pipeline():
    assert list(DVC["stages"]) == ["ingest", "preprocess", "train", "evaluate"]


def test_every_command_and_option_exists():
    commands = typer.main.get_command(app).commands
    for name, stage in DVC["stages"].items():
        calls = movierec_calls(stage["cmd"])
        assert calls, f"{name}: calls no movierec command"
        for words in calls:
            command = commands[words[0]]
            options = {opt for p in command.params for opt in p.opts}
            used = {w.split("=")[0] for w in words[1:] if w.startswith("--")}
            assert used <= options, f"{name}: unknown options {used - options}"
    evaluate = DVC["stages"]["evaluate"]["cmd"]
    assert "--model" in evaluate  # given by the shell loop over data/models


def test_code_dependencies_and_params_exist():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in DVC["stages"].items():
        for dep in stage.get("deps", []):
            if not dep.startswith("data/"):
                assert (ROOT / dep).is_file(), f"{name}: {dep}"
        for section in stage.get("params", []):
            assert section in params, f"{name}: params.yaml has no {section}"


def test_metrics_are_json_files_kept_in_git():
    metrics = [m for stage in DVC["stages"].values() for m in stage.get("metrics", [])]
    assert metrics
    for entry in metrics:
        ((path, options),) = entry.items()
        assert path.endswith(".json") and options == {"cache": False}


def test_remote_is_s3_without_credentials():
    text = (ROOT / ".dvc" / "config").read_text()
    config = configparser.ConfigParser()
    config.read_string(text)
    remote = config['\'remote "minio"\'']
    assert remote["url"].startswith("s3://") and remote["endpointurl"].startswith("http")
    assert config["core"]["remote"] == "minio"
    assert not re.search(r"(?i)(access_key_id|secret_access_key|password)\s*=", text)
