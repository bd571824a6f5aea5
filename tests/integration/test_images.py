"""The images, built and run through a real container engine (the test's own `dockerd`).

`make images` builds both images from the wheelhouse (no index inside the build) on a base made
from Debian packages; then:
- the predictor image serves two versions from the real S3 server (SeaweedFS) with the flags and
  environment of the `ServingRuntime` manifest, as the non-root user on a read-only root file
  system: /recommend, KServe V1 and V2 through KServe's own client, a `rollout canary` picked up
  without a restart, and SIGTERM under load with no failed request;
- the component image runs every step of the compiled pipeline through Kubeflow's own local
  `DockerRunner` (the command and arguments of the compiled component), against the same S3
  server, and publishes what the in-process run publishes.
Every container runs with `--network host`: each connection stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from components.core import layout, rollout
from components.core.model_artifact import FactorModel, list_versions
from components.core.store import open_store
from tests.http_load import Load, wait_for
from tests.servers import ServerError, free_port, start_or_fail
from tests.servers.docker import DockerEngine, base_image, prune
from tests.synthetic_models import publish_synthetic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX, TAG = "movierec-test", "test"
COMPONENTS, PREDICTOR = f"{PREFIX}/components:{TAG}", f"{PREFIX}/predictor:{TAG}"
USER = "10001"
N_USERS, N_MOVIES, K = 500, 120, 8


def _fail_on(error: Exception | None, what: str) -> None:
    if error is not None:  # the reason alone, no chained traceback
        pytest.fail(f"{what}: {error}", pytrace=False)


@pytest.fixture(scope="module")
def engine():
    engine = start_or_fail(DockerEngine(), "the container engine")
    yield engine
    prune(engine)
    engine.close()


@pytest.fixture(scope="module")
def images(engine):
    """Both images built by `make images` (the Jenkins stage's target) on the Debian-made base."""
    error = None
    try:
        base = base_image(engine)
    except ServerError as exc:
        error = exc
    _fail_on(error, "the base image could not be made")
    env = {**os.environ, **engine.env(), "DOCKER_BUILDKIT": "0"}
    done = subprocess.run(["make", "--no-print-directory", "images", f"BASE_IMAGE={base}",
                           f"IMAGE_PREFIX={PREFIX}", f"IMAGE_TAG={TAG}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return engine


def run_container(engine: DockerEngine, image: str, *args: str, env: dict | None = None, mounts: tuple = (),
                  name: str | None = None, detach: bool = False, entrypoint: str | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess:
    """`docker run` as the manifests run it: non-root, read-only root, /tmp a tmpfs, host network."""
    cmd = ["run", "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,exec,size=512m",
           "--security-opt", "no-new-privileges", "--cap-drop", "ALL"]
    cmd += ["--detach"] if detach else ["--rm"]
    cmd += ["--name", name] if name else []
    cmd += ["--entrypoint", entrypoint] if entrypoint else []
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    for mount in mounts:
        cmd += ["--volume", mount]
    return engine.docker(*cmd, image, *args, timeout=timeout)


# -- what every image must be ------------------------------------------------------------------------

@pytest.mark.parametrize("image", [COMPONENTS, PREDICTOR])
def test_image_runs_as_the_non_root_user_on_a_read_only_root(images, image):
    config = images.inspect(image)["Config"]
    assert config["User"] == USER
    probe = ("import os, pathlib, sys\n"
             "print(os.getuid(), sys.version_info[:2])\n"
             "for p in ('/opt/movierec/x', '/home/movierec/x', '/x'):\n"
             "    try:\n        pathlib.Path(p).write_text('x'); print('WROTE', p)\n"
             "    except OSError as e:\n        print('refused', p, e.errno)\n"
             "pathlib.Path('/tmp/x').write_text('x'); print('tmp ok')\n"
             "import components, predictor\n")
    out = run_container(images, image, "-c", probe, entrypoint="python", timeout=120).stdout
    assert out.splitlines()[0] == f"{USER} (3, 11)"
    assert "WROTE" not in out and out.count("refused") == 3 and "tmp ok" in out, out


# What each image must not hold: the other image's libraries (and the dev tools of neither).
NOT_IN = {PREDICTOR: ("kfp", "surprise", "pyarrow", "matplotlib", "dvc", "pytest", "boto3"),  # pandas: kserve needs it
          COMPONENTS: ("kserve", "uvicorn", "fastapi", "dvc", "pytest", "boto3")}


@pytest.mark.parametrize("image", [COMPONENTS, PREDICTOR])
def test_image_holds_only_its_dependency_group_with_no_index_access(images, image):
    probe = ("import importlib.util, sys\n"
             f"print(' '.join(m for m in {NOT_IN[image]!r} if importlib.util.find_spec(m)) or 'none')\n")
    assert run_container(images, image, "-c", probe, entrypoint="python", timeout=120).stdout.strip() == "none"
    out = run_container(images, image, "-m", "pip", "check", entrypoint="python", timeout=120).stdout
    assert "No broken requirements" in out, (image, out)
    env = dict(kv.split("=", 1) for kv in images.inspect(image)["Config"]["Env"])
    assert env["PIP_NO_INDEX"] == "1"


# -- the predictor image ------------------------------------------------------------------------------

def runtime_container() -> dict:
    """The predictor container of the ServingRuntime manifest."""
    doc = yaml.safe_load((ROOT / "manifests" / "kserve" / "servingruntime.yaml").read_text())
    (container,) = doc["spec"]["containers"]
    return container


def runtime_args(container: dict, env: dict[str, str], port: int) -> list[str]:
    """The manifest's args with Kubernetes' $(VAR) expansion, the HTTP port moved off 8080 (host network)."""
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]
    return [f"--http_port={port}" if arg.startswith("--http_port=") else arg for arg in args]


def test_predictor_image_serves_from_s3_with_the_serving_runtime_flags(images, s3, s3_env, tmp_path):
    store_uri = f"s3://{s3_env}/prod"
    store = open_store(store_uri)
    models = {v: publish_synthetic(store, v, N_USERS, N_MOVIES, K, seed=i) for i, v in enumerate(("v1", "v2", "v3"))}
    rollout.set_stable(store, "v1")
    rollout.start_canary(store, "v2", 30)
    # KServe's storage initializer puts the InferenceService's storageUri into /mnt/models. It runs in
    # a process of its own, as on a cluster: its download forks a multiprocessing pool, which can
    # deadlock in a process that already runs threads (this test process does).
    model_dir = tmp_path / "models"
    download = subprocess.run(
        [sys.executable, "-c", "import sys; from kserve_storage import Storage; Storage.download(*sys.argv[1:])",
         f"s3://{s3_env}/prod/{layout.model_prefix('v1').rstrip('/')}", str(model_dir)],
        env={**os.environ, **s3.env()}, capture_output=True, text=True, timeout=300)
    assert download.returncode == 0, download.stderr[-2000:]
    os.chmod(model_dir, 0o755)

    container, port = runtime_container(), free_port()
    env = {item["name"]: item.get("value", "") for item in container["env"]}
    env.update(s3.env(), MOVIEREC_STORE=store_uri, MOVIEREC_REQUEST_LOG="file:/tmp/requests.log")
    name = f"movierec-predictor-{port}"
    started = time.monotonic()
    run_container(images, PREDICTOR, *runtime_args(container, env, port), env=env, name=name, detach=True,
                  mounts=(f"{model_dir}:/mnt/models:ro",))
    url = f"http://127.0.0.1:{port}"
    try:
        probe = container["readinessProbe"]["httpGet"]["path"]
        wait_for(lambda: httpx.get(f"{url}{probe}", timeout=2).status_code == 200, 120, "readiness")
        ready_seconds = time.monotonic() - started
        print(f"predictor image ready {ready_seconds:.1f} s after docker run")

        r = httpx.get(f"{url}/recommend/7", timeout=10)
        assert r.status_code == 200 and r.headers["x-model-version"] == rollout.load(store).route(7)
        assert r.text.split(",") == models[r.headers["x-model-version"]].recommend(7, 20)[0]
        assert httpx.get(f"{url}/recommend/abc", timeout=10).status_code == 400
        _kserve_v1_v2(url, models)

        load = Load(url, N_USERS, timeout=10, leave_on_close=True)
        try:
            wait_for(lambda: sum(load.codes.values()) > 50, 30, "traffic")
            assert set(load.versions) <= {"v1", "v2"}
            rollout.start_canary(store, "v3", 50, reason="image test")  # no restart: the watcher picks it up
            before = Counter(load.versions)
            wait_for(lambda: (Counter(load.versions) - before)["v3"] > 20, 60, "the new canary served")
            images.docker("kill", "--signal", "TERM", name)
            stopped = images.docker("wait", name, timeout=60).stdout.strip()
            time.sleep(0.3)
        finally:
            load.stop()
        logs = images.docker("logs", name, check=False)
        assert stopped == "0", logs.stdout[-3000:] + logs.stderr[-3000:]
        assert load.failed == [] and set(load.codes) == {200}, (load.codes, load.failed[:3])
        assert sum(load.codes.values()) > 100 and load.versions["v3"] > 0
        assert load.closed == 2  # both clients were told to go before the server stopped
    finally:
        images.docker("rm", "--force", name, check=False)


def _kserve_v1_v2(url: str, models: dict) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def go():
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=10))
        try:
            assert await v2.is_server_ready(url) and await v2.is_model_ready(url, "movierec")
            req = InferRequest(model_name="movierec", infer_inputs=[
                InferInput("user_id", [2], "INT64", data=[1, 2]), InferInput("k", [1], "INT32", data=[5])])
            res = await v2.infer(url, req, model_name="movierec")
            return res, await v1.infer(url, {"instances": [1, 2], "k": 5}, model_name="v1")
        finally:
            await v2.close()
            await v1.close()

    res, v1_res = asyncio.run(go())
    out = {o.name: o.as_numpy() for o in res.outputs}
    for row, uid in enumerate((1, 2)):
        version = out["model_version"][row]
        version = version.decode() if isinstance(version, bytes) else version
        got = [m.decode() if isinstance(m, bytes) else m for m in out["movie_ids"][row]]
        assert got == models[version].recommend(uid, 5)[0]
    assert [p["movie_ids"] for p in v1_res["predictions"]] == [models["v1"].recommend(u, 5)[0] for u in (1, 2)]


# -- the component image ------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:.*have no effect in the current local runner")
def test_component_image_runs_every_pipeline_step_like_the_in_process_run(images, s3, s3_env, tmp_path,
                                                                          monkeypatch):
    """kfp.local's DockerRunner runs each compiled step's command and arguments in the image; the
    store ends up with what the in-process run (SubprocessRunner, `movierec pipeline run`) gives."""
    from kfp import local

    from components import steps
    from pipelines.local import run_local
    from pipelines.training_pipeline import training_pipeline
    from tests.integration.test_pipeline_local import event_lines

    lines = "\n".join(event_lines(n_users=60, n_movies=40)) + "\n"
    small = json.dumps({"train": {"svd": {"n_factors": 5, "n_epochs": 5}, "svdpp": {"n_factors": 5, "n_epochs": 5},
                                  "als": {"factors": 5, "iterations": 5}}})
    results = {}
    for runner in ("process", "image"):
        store_uri, root = f"s3://{s3_env}/{runner}", tmp_path / f"root-{runner}"
        root.mkdir()
        os.chmod(root, 0o777)  # the image's user writes the steps' outputs here (mounted at the same path)
        (root / "events.log").write_text(lines)
        source = f"file:{root / 'events.log'}"
        if runner == "process":
            winner = run_local(source, store_uri, str(root), json.loads(small), group=runner, deploy="canary",
                               force_deploy=True).winner
        else:
            monkeypatch.setenv("DOCKER_HOST", images.host)
            images.docker("tag", COMPONENTS, steps.IMAGE)  # the image the compiled steps name
            local.init(runner=local.DockerRunner(network_mode="host", read_only=True, user=USER,
                                                 tmpfs={"/tmp": "rw,exec,size=512m"}, environment=s3.env()),
                       pipeline_root=str(root))
            task = training_pipeline(source=source, store=store_uri, params=small, group=runner, deploy="canary",
                                     canary_percent=10.0, force_deploy=True)
            winner = str(task.output or "")
        (run_dir,) = root.glob("movierec-training-*")
        step_dirs = sorted(p.name for p in run_dir.iterdir() if p.is_dir())
        store = open_store(store_uri)
        cards = {}
        state = rollout.load(store)
        for version in list_versions(store):
            model, card = FactorModel.load(store, version)   # checksums verified
            metrics = {k: round(v, 9) for k, v in card.metrics.items() if "second" not in k}
            kind = "refit" if card.gate.get("refit_of") else "evaluated"   # the release step refits the winner
            cards[f"{card.algorithm} {kind}"] = {"metrics": metrics, "deployed": rollout.deployment_of(state, version),
                                                 "candidate": card.gate["candidate"], "n_factors": model.n_factors}
        results[runner] = {"cards": cards, "winner": winner.split("-")[0], "steps": step_dirs,
                           "rollout": [v and v.split("-")[0] for v in (state.stable, state.canary)]}
    assert {c for c in results["image"]["cards"] if c.endswith("evaluated")} == {
        "svd evaluated", "svdpp evaluated", "als evaluated"}
    assert results["image"]["rollout"][0] is not None   # one model per run: the first release is stable
    assert results["image"] == results["process"]
