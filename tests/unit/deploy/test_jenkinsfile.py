"""The Jenkinsfile holds no logic the tests don't exercise: every stage calls a `make` target,
every target exists, and the ones that need no cluster run here (images, submit and
deploy-canary in DRY_RUN mode; deploy-canary also for real against a local store with `true`
standing in for kubectl). The file itself compiles as Groovy and keeps its secrets in Jenkins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.core import rollout
from components.core.model_artifact import ModelCard
from components.core.store import open_store
from tests.unit.core.test_model_artifact import make_model

ROOT = Path(__file__).resolve().parents[3]
JENKINSFILE = ROOT / "Jenkinsfile"
GROOVY = "org.apache.groovy:groovy:4.0.33"


def jenkinsfile() -> str:
    return JENKINSFILE.read_text()


def without_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def make_calls() -> list[str]:
    """The `make ...` command line of every sh step."""
    return re.findall(r"""\bsh\s+['"](make\s[^'"]*)['"]""", without_comments(jenkinsfile()))


def stages() -> list[str]:
    return re.findall(r"""\bstage\s*\(\s*['"]([^'"]+)['"]\s*\)""", without_comments(jenkinsfile()))


def make(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# -- the file -------------------------------------------------------------------------------------

def test_stages_cover_the_whole_delivery():
    assert stages() == ["Lint + Unit", "Integration", "Compile pipeline", "Build & push images",
                        "Submit pipeline run", "Deploy canary"]


def test_every_stage_only_calls_make():
    text = without_comments(jenkinsfile())
    sh_steps = re.findall(r"""\bsh\s+['"]([^'"]*)['"]""", text)
    assert sh_steps and all(step.startswith("make ") for step in sh_steps), sh_steps
    assert "sh '''" not in text and 'sh """' not in text and "script {" not in text


def test_triggers_on_commits_and_on_a_schedule():
    text = without_comments(jenkinsfile())
    triggers = re.search(r"triggers\s*\{(.*?)\n\s*\}", text, re.S).group(1)
    assert re.search(r"cron\('[^']+'\)", triggers)
    assert "pollSCM" in triggers or "githubPush" in triggers


def test_reports_and_artifacts_are_published():
    text = without_comments(jenkinsfile())
    assert text.count("junit testResults: 'build/junit.xml'") == 2
    assert text.count("parser: 'COBERTURA', pattern: 'build/coverage.xml'") == 2
    assert "archiveArtifacts artifacts: 'build/pipeline.yaml'" in text
    # make unit/integration write exactly the files the stages publish
    unit = make("-n", "unit").stdout
    assert "--junitxml=build/junit.xml" in unit and "--cov-report=xml:build/coverage.xml" in unit
    assert "--output build/pipeline.yaml" in make("-n", "compile").stdout


def test_credentials_come_from_jenkins_only():
    text = jenkinsfile()
    assert re.search(r"usernamePassword\(credentialsId:\s*'registry'", text)
    assert re.search(r"string\(credentialsId:\s*'kfp-host'", text)
    assert not re.search(r"(?i)(password|token|secret)\s*[:=]\s*['\"][^'\"$]+['\"]", without_comments(text))
    # the variables withCredentials binds are the ones the Makefile reads
    for name in ("REGISTRY_USER", "REGISTRY_PASSWORD", "KFP_HOST"):
        assert f"'{name}'" in text
        assert name in (ROOT / "Makefile").read_text()


def test_jenkinsfile_compiles_as_groovy(tmp_path):
    """A syntax error would only show on the Jenkins server: compile the file with Groovy
    (Maven Central jar; Jenkins resolves the pipeline steps at run time, the syntax is Groovy's)."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None or mvn is None:
        pytest.skip("java and mvn are needed to compile the Jenkinsfile (make test-tools)")
    group, artifact, version = GROOVY.split(":")
    jar = (Path.home() / ".m2" / "repository" / Path(*group.split(".")) / artifact / version
           / f"{artifact}-{version}.jar")
    if not jar.exists():
        got = subprocess.run([mvn, "-q", "-B", "dependency:get", f"-Dartifact={GROOVY}", "-Dtransitive=false"],
                             capture_output=True, text=True, timeout=300)
        assert got.returncode == 0, got.stdout + got.stderr
    source = tmp_path / "Jenkinsfile.groovy"
    source.write_text(jenkinsfile())
    done = subprocess.run([java, "-cp", str(jar), "org.codehaus.groovy.tools.FileSystemCompiler",
                           "-d", str(tmp_path / "classes"), str(source)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the make targets it calls ----------------------------------------------------------------------

def test_the_jenkinsfile_calls_the_expected_targets():
    targets = {call.split()[1] for call in make_calls()}
    assert targets == {"lint", "unit", "integration", "compile", "images", "submit", "deploy-canary"}


@pytest.mark.parametrize("call", make_calls())
def test_every_make_target_exists(call):
    done = make("-n", *call.split()[1:], env={"KFP_HOST": "http://kfp.invalid", "REGISTRY_USER": "u",
                                              "REGISTRY_PASSWORD": "p"})
    assert done.returncode == 0, done.stderr


def test_make_lint_checks_every_package_and_passes():
    """The Lint stage's verdict, here too: `make test` would not see a lint failure otherwise."""
    done = make("-n", "lint")
    assert done.returncode == 0, done.stderr
    for package in ("components", "pipelines", "predictor", "simulator", "movierec", "tests"):
        assert f" {package}" in done.stdout.splitlines()[-1]
    done = make("lint", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_make_images_dry_run_builds_both_dockerfiles():
    done = make("images", "DRY_RUN=1", "IMAGE_TAG=t1", "IMAGE_PREFIX=registry.example/movierec")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for image in ("components", "predictor"):
        assert any(line.startswith("docker build") and f"images/{image}.Dockerfile" in line
                   and f"--tag registry.example/movierec/{image}:t1" in line for line in lines), lines
        assert (ROOT / "images" / f"{image}.Dockerfile").exists()


def test_make_images_push_logs_in_without_showing_the_password():
    env = {"REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "s3cr3t-value"}
    done = make("images", "DRY_RUN=1", "PUSH=1", "IMAGE_TAG=t1", env=env)
    assert done.returncode == 0, done.stderr
    assert "s3cr3t-value" not in done.stdout + done.stderr
    assert "--password-stdin" in done.stdout
    assert done.stdout.count("docker push movierec/") == 2
    refused = make("images", "DRY_RUN=1", "PUSH=1", env={"REGISTRY_USER": "", "REGISTRY_PASSWORD": ""})
    assert refused.returncode != 0 and "REGISTRY_USER" in refused.stderr


def test_make_submit_dry_run_and_refusal_without_a_host():
    done = make("submit", "DRY_RUN=1", env={"KFP_HOST": "http://kfp.example:8080"})
    assert done.returncode == 0, done.stderr
    assert "movierec pipeline submit --host http://kfp.example:8080" in done.stdout
    assert "--pipeline-root minio://mlpipeline/v2/artifacts" in done.stdout
    refused = make("submit", env={"KFP_HOST": ""})
    assert refused.returncode != 0 and "KFP_HOST" in refused.stderr


def _published_store(path: Path) -> str:
    store = open_store(str(path))
    for version in ("svd-a", "svd-b"):
        make_model().save(store, ModelCard(version=version, algorithm="svd"))
    rollout.set_stable(store, "svd-a")
    return str(path)


def test_make_deploy_canary_for_real_with_a_stand_in_kubectl(tmp_path):
    """Builds the prod overlay with the new predictor image as KServe's canary, 'applies' it (with
    `true` for kubectl) and makes a published model version the canary in the store."""
    store = _published_store(tmp_path / "store")
    kubectl = tmp_path / "kubectl"  # a cluster whose Secrets hold values: every jsonpath query answers
    kubectl.write_text("#!/bin/sh\ncase \"$*\" in *jsonpath*) printf 'c2VjcmV0';; esac\n")
    kubectl.chmod(0o755)
    done = make("deploy-canary", f"BUILD_DIR={tmp_path / 'build'}", "IMAGE_TAG=abc123", "CANARY_PERCENT=25",
                "CANARY_VERSION=svd-b", f"KUBECTL={kubectl}", env={"MOVIEREC_STORE": store}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    objs = list(yaml.safe_load_all((tmp_path / "build" / "deploy-canary.yaml").read_text()))
    (isvc,) = [o for o in objs if o["kind"] == "InferenceService"]
    (canary,) = isvc["spec"]["canary"]
    assert canary["trafficPercent"] == 25
    assert canary["predictor"]["model"]["runtimeVersion"] == "abc123"
    assert all(o["metadata"].get("namespace") == "movierec" for o in objs if o["kind"] != "Namespace")
    state = rollout.load(open_store(store))
    assert (state.stable, state.canary, state.canary_percent) == ("svd-a", "svd-b", 25)


def test_make_deploy_canary_dry_run_changes_nothing(tmp_path):
    store = _published_store(tmp_path / "store")
    done = make("deploy-canary", "DRY_RUN=1", f"BUILD_DIR={tmp_path / 'build'}", "CANARY_VERSION=svd-b",
                env={"MOVIEREC_STORE": store}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kubectl apply --server-side --filename" in done.stdout
    assert "movierec rollout canary svd-b --percent 10" in done.stdout
    assert rollout.load(open_store(store)).canary is None


# -- the build parameters are validated and quoted --------------------------------------------------

HOSTILE = ["10; touch {mark}", "$(shell touch {mark})", "`touch {mark}`", "x' ; touch {mark} ; '", "$$(touch {mark})"]


@pytest.mark.parametrize("target", ["images", "submit", "deploy-canary"])
@pytest.mark.parametrize("param", ["CANARY_PERCENT", "IMAGE_PREFIX"])
@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_build_parameter_is_refused_and_never_run(tmp_path, target, param, hostile):
    """Jenkins hands its string parameters to make through the environment: a value that would run
    a command if pasted into a recipe stops the target with a one-line reason and runs nothing."""
    mark = tmp_path / "pwned"
    value = hostile.format(mark=mark)
    for how in ("environment", "command line"):
        args = [target, "DRY_RUN=1", f"BUILD_DIR={tmp_path / 'build'}", "KUBECTL=true"]
        env = {"KFP_HOST": "http://kfp.example:8080"}
        if how == "environment":
            env[param] = value
        else:
            args.append(f"{param}={value}")
        done = make(*args, env=env)
        assert done.returncode != 0, (how, done.stdout)
        assert f"{param} must be" in done.stderr, (how, done.stderr)
        assert not mark.exists(), f"{how}: the value ran a command"
        assert not (tmp_path / "build" / "deploy-canary.yaml").exists()


@pytest.mark.parametrize("value", ["101", "-5", "ten", "", "1e1"])
def test_canary_percent_must_be_a_share(value):
    done = make("check-params", f"CANARY_PERCENT={value}")
    assert done.returncode != 0 and "CANARY_PERCENT must be a whole number from 0 to 100" in done.stderr


@pytest.mark.parametrize("param,value", [("CANARY_PERCENT", "0"), ("CANARY_PERCENT", "100"),
                                         ("IMAGE_PREFIX", "registry.example:5000/team/movie-rec"),
                                         ("IMAGE_PREFIX", "movierec")])
def test_good_build_parameters_pass(param, value):
    done = make("check-params", f"{param}={value}", env={param: value})
    assert done.returncode == 0, done.stderr


def test_jenkins_parameters_reach_make_through_the_environment_only():
    """The parameters become environment variables of the build; no sh step pastes them in."""
    text = without_comments(jenkinsfile())
    for name in ("IMAGE_PREFIX", "CANARY_PERCENT"):
        assert f'{name} = "${{params.{name}}}"' in text
    assert "${params" not in "".join(re.findall(r"""\bsh\s+['"][^'"]*['"]""", text))
    makefile = (ROOT / "Makefile").read_text()
    recipes = [line for line in makefile.splitlines() if line.startswith("\t")]
    for name in ("IMAGE_PREFIX", "CANARY_PERCENT", "IMAGE_TAG", "CANARY_VERSION", "OVERLAY"):
        pasted = [line for line in recipes if f"$({name})" in line.replace(f"$(if $({name}),", "")]
        assert not pasted, f"$({name}) pasted into a recipe: {pasted}"
