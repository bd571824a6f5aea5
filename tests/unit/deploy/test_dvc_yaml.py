"""dvc.yaml stays in step with the code: the commands and options its stages call exist, its code
dependencies exist and cover every project file a stage's command imports, its params sections
are in params.yaml, and it mirrors the Kubeflow steps. (tests/integration/test_dvc.py runs it for
real, and shows that a changed imported file makes its stages stale.)"""

from __future__ import annotations

import ast
import configparser
import inspect
import re
import shlex
import textwrap
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
                assert (ROOT / dep).exists(), f"{name}: {dep}"
        for section in stage.get("params", []):
            assert section in params, f"{name}: params.yaml has no {section}"


def module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def project_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] in ("components", "pipelines", "predictor", "movierec")}


def files_a_command_runs(name: str) -> set[Path]:
    """The command's module, and every project file its body imports, followed through the modules."""
    callback = inspect.unwrap(typer.main.get_command(app).commands[name].callback)
    source = Path(inspect.getsourcefile(callback))
    module_level = [n for n in ast.parse(source.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    todo = list(project_imports(ast.parse(textwrap.dedent(inspect.getsource(callback))))
                | project_imports(ast.Module(module_level, [])))
    files, seen = {source}, set()
    while todo:
        module = todo.pop()
        if module in seen or (path := module_path(module)) is None:
            continue
        seen.add(module)
        files.add(path)
        todo += project_imports(ast.parse(path.read_text()))
    return files


def test_code_dependencies_cover_every_file_a_stage_imports():
    for name, stage in DVC["stages"].items():
        deps = [ROOT / dep for dep in stage.get("deps", []) if not dep.startswith("data/")]
        (command, *_), *_ = movierec_calls(stage["cmd"])
        files = files_a_command_runs(command)
        assert len(files) > 3, (name, files)
        uncovered = sorted(str(f.relative_to(ROOT)) for f in files
                           if not any(f == dep or dep in f.parents for dep in deps))
        assert not uncovered, f"{name}: dvc.yaml misses code the stage imports: {uncovered}"


def test_coverage_check_notices_a_missing_dependency():
    files = files_a_command_runs("evaluate")
    assert ROOT / "components" / "training" / "report.py" in files  # imported inside the command
    assert ROOT / "components" / "core" / "store.py" in files  # imported through training modules


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
