"""The compiled movierec-training pipeline: its steps, their wiring, caching, image and defaults;
and the `movierec pipeline` commands that talk to a cluster, against a stand-in kfp.Client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from components.core.errors import UserError
from pipelines import cli as pipeline_cli
from pipelines.training_pipeline import PIPELINE_NAME, compile_pipeline

ROOT = Path(__file__).resolve().parents[3]


def load_spec(path: Path) -> dict:
    """The compiled file: the pipeline spec, then (second YAML document) its Kubernetes platform spec."""
    spec, *platform = yaml.safe_load_all(path.read_text())
    for doc in platform:
        spec.update(doc)
    return spec


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    compile_pipeline(str(path), {"evaluate": {"gate_margin": 0.02}})
    return load_spec(path)


def _tasks(spec: dict) -> dict[str, dict]:
    """Tasks by display name."""
    return {t["taskInfo"]["name"]: t for t in spec["root"]["dag"]["tasks"].values()}


def test_steps_and_wiring(spec):
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME == "movierec-training"
    tasks = _tasks(spec)
    assert set(tasks) == {"ingest", "preprocess", "compare", "release",
                          *(f"{step}-{a}" for step in ("train", "evaluate", "publish") for a in ("svd", "svdpp", "als"))}
    by_key = {key: t["taskInfo"]["name"] for key, t in spec["root"]["dag"]["tasks"].items()}
    deps = {name: {by_key[d] for d in t.get("dependentTasks", [])} for name, t in tasks.items()}
    assert deps["preprocess"] == {"ingest"}
    assert deps["train-svd"] == {"preprocess"}
    assert deps["evaluate-svdpp"] == {"preprocess", "train-svdpp"}
    assert "publish-svd" not in deps["publish-svdpp"]          # publish deploys nothing: no order among them
    assert {f"{step}-{a}" for step in ("evaluate", "publish") for a in ("svd", "svdpp", "als")} <= deps["compare"]
    assert deps["release"] == {"compare"}                      # the one writer of the rollout state, once
    released = tasks["release"]["inputs"]["parameters"]
    assert {released[k]["taskOutputParameter"]["outputParameterKey"] for k in ("winner", "best")} == {"winner", "best"}
    assert released["deploy"]["componentInputParameter"] == "deploy"
    assert spec["root"]["outputDefinitions"]["parameters"]["Output"]["parameterType"] == "STRING"
    slots = tasks["compare"]["inputs"]
    assert set(slots["artifacts"]) == {"evaluation_a", "evaluation_b", "evaluation_c"}
    assert set(slots["parameters"]) == {"candidate_a", "candidate_b", "candidate_c"}
    assert tasks["train-svdpp"]["inputs"]["parameters"]["algorithm"]["runtimeValue"]["constant"] == "svdpp"


def test_the_models_are_train_algorithms_of_the_params(tmp_path):
    path = tmp_path / "two.yaml"
    compile_pipeline(str(path), {"train": {"algorithms": ["als", "popularity"]}})
    tasks = _tasks(load_spec(path))
    assert {n for n in tasks if n.startswith("train-")} == {"train-als", "train-popularity"}
    assert set(tasks["compare"]["inputs"]["artifacts"]) == {"evaluation_a", "evaluation_b"}


@pytest.mark.parametrize("algorithms", [["svd", "svdpp", "als", "bpr", "popularity"], ["svd", "svd"]])
def test_too_many_or_repeated_models_are_one_clear_error(tmp_path, algorithms):
    with pytest.raises(UserError, match="give 1 to 4 distinct algorithms"):
        compile_pipeline(str(tmp_path / "p.yaml"), {"train": {"algorithms": algorithms}})
    assert not (tmp_path / "p.yaml").exists()


def test_caching_off_where_inputs_are_live(spec):
    tasks = _tasks(spec)
    for name in ("ingest", "preprocess", "evaluate-svd", "publish-svd", "publish-svdpp", "release"):
        assert not tasks[name].get("cachingOptions", {}).get("enableCache", False), name
    assert tasks["train-svd"]["cachingOptions"]["enableCache"] is True


def test_store_steps_get_s3_credentials_from_a_secret(spec):
    executors = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {name for name, e in executors.items() if e.get("secretAsEnv")}
    assert with_secret == {"exec-ingest", "exec-preprocess", "exec-evaluate", "exec-evaluate-2", "exec-evaluate-3",
                           "exec-publish", "exec-publish-2", "exec-publish-3", "exec-release"}
    # train and compare never touch the store
    envs = {m["envVar"]: m["secretKey"] for s in executors["exec-publish"]["secretAsEnv"] for m in s["keyToEnv"]}
    assert envs == {k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    assert {s["secretNameParameter"]["componentInputParameter"] for s in executors["exec-ingest"]["secretAsEnv"]} \
        == {"s3_secret"}
    assert spec["root"]["inputDefinitions"]["parameters"]["s3_secret"]["defaultValue"] == "movierec-s3-pipeline"


def test_artifacts_and_defaults(spec):
    outputs = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert spec["components"]["comp-train"]["outputDefinitions"]["artifacts"]["model"]["artifactType"][
        "schemaTitle"] == "system.Model"
    params = spec["root"]["inputDefinitions"]["parameters"]
    baked = json.loads(params["params"]["defaultValue"])
    assert baked["evaluate"]["gate_margin"] == 0.02 and baked["train"]["svd"]["n_factors"] == 100
    assert params["deploy"]["defaultValue"] == "none"


def test_module_main_compiles_with_the_image_from_the_environment(tmp_path):
    out = tmp_path / "p.yaml"
    env = {"MOVIEREC_IMAGE": "registry.example/movierec/components:9.9", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "pipelines.training_pipeline", str(out)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    spec = load_spec(out)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/movierec/components:9.9"}
    # component bodies import the project inside, never at module level
    command = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["command"][-1]
    assert "from components.training.train import train as run_train" in command


def test_compile_command(tmp_path):
    out = tmp_path / "build" / "pipeline.yaml"
    result = CliRunner().invoke(pipeline_cli.app, ["compile", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert load_spec(out)["pipelineInfo"]["name"] == "movierec-training"


def test_parse_interval():
    assert pipeline_cli.parse_interval("72h") == 259200
    assert pipeline_cli.parse_interval("1d") == 86400
    assert pipeline_cli.parse_interval("90m") == 5400
    for bad in ("soon", "10s", "-1h"):
        with pytest.raises(UserError, match="duration|interval"):
            pipeline_cli.parse_interval(bad)


class FakeClient:
    """Records what the commands ask of kfp.Client."""

    def __init__(self):
        self.calls = []

    def create_experiment(self, name):
        self.calls.append(("experiment", name))
        return SimpleNamespace(experiment_id="exp-1")

    def create_recurring_run(self, **kwargs):
        self.calls.append(("recurring", kwargs))
        return SimpleNamespace(recurring_run_id="rr-1")

    def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
        self.calls.append(("run", pipeline_file, kwargs))
        return SimpleNamespace(run_id="run-1")


def test_schedule_and_submit(monkeypatch):
    fake = FakeClient()
    hosts = []
    monkeypatch.setattr(pipeline_cli, "_client", lambda host: hosts.append(host) or fake)
    result = CliRunner().invoke(pipeline_cli.app, [
        "schedule", "--host", "http://kfp.example:8080", "--every", "72h",
        "--pipeline-root", "minio://mlpipeline/v2/artifacts", "--store", "s3://movierec/prod"])
    assert result.exit_code == 0, result.output
    assert "rr-1" in result.output and hosts == ["http://kfp.example:8080"]
    kind, kwargs = fake.calls[1]
    assert kind == "recurring" and kwargs["experiment_id"] == "exp-1"
    assert kwargs["interval_second"] == 72 * 3600 and kwargs["max_concurrency"] == 1
    assert kwargs["pipeline_root"] == "minio://mlpipeline/v2/artifacts"
    assert kwargs["params"]["store"] == "s3://movierec/prod" and kwargs["params"]["deploy"] == "canary"
    assert json.loads(kwargs["params"]["params"])["evaluate"]["k"] == 20
    assert kwargs["params"]["s3_secret"] == "movierec-s3-pipeline"
    assert load_spec(Path(kwargs["pipeline_package_path"]))["pipelineInfo"]["name"] == PIPELINE_NAME

    result = CliRunner().invoke(pipeline_cli.app, ["submit", "--host", "http://kfp.example:8080"])
    assert result.exit_code == 0, result.output
    assert "run-1" in result.output and fake.calls[-1][0] == "run"


def test_local_progress_from_kfp_log_lines():
    import logging

    from pipelines.local import _StepTimer

    lines = []
    timer = _StepTimer(lines.append, {"train-2": "train-svdpp"})

    def record(msg):
        return logging.LogRecord("root", logging.INFO, __file__, 1, msg, None, None)

    assert timer.filter(record("Executing task \x1b[96m'train-2'\x1b[0m"))
    assert timer.filter(record("Task \x1b[96m'train-2'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m"))
    assert lines[0] == "[1] train-svdpp ..." and lines[1].startswith("    train-svdpp: SUCCESS in ")
    assert set(timer.seconds) == {"train-svdpp"}

