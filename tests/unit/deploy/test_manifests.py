"""Every manifest under manifests/ is valid, alone and as built by each Kustomize overlay.

A cluster is not needed to catch most deployment mistakes: KServe kinds are checked against the
CRD schemas KServe publishes (tests/schemas/kserve/, made strict the way `kubectl apply
--validate=strict` is: an unknown field is an error), core kinds against the upstream Kubernetes
schemas bundled by `kubernetes-validate`, Strimzi's KafkaTopic against the fields its CRD defines.
The overlays are built with the real `kustomize` (`make kustomize` caches it outside the
repository; `kubectl kustomize` is the fallback) and every object of every build is validated,
then checked for what a schema cannot see: references between objects, namespaces, the canary.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests"
SCHEMAS = ROOT / "tests" / "schemas" / "kserve"
K8S_VERSION = "1.30"
OVERLAYS = ("dev", "prod", "knative")
KSERVE_CRDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io_servingruntimes.yaml",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "serving.kserve.io_clusterservingruntimes.yaml",
}
# The fields of Strimzi's KafkaTopic CRD (kafka.strimzi.io/v1beta2) that a spec may hold.
KAFKA_TOPIC_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object"},
                "topicName": {"type": "string"},
            },
        },
    },
}
KUSTOMIZE_KINDS = {"Kustomization", "Component"}
# Files that no kustomization includes, on purpose.
NOT_IN_ANY_BUILD = {
    "kserve/inferenceservice-knative.yaml",  # the overlays/knative patch derives it
    "monitoring/alertmanager-slack-secret.yaml",  # a placeholder: the real Secret is made out of band
}


# -- loading and validating ------------------------------------------------------------------------

def yaml_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def generated_files() -> set[Path]:
    """Files that a configMapGenerator/secretGenerator turns into data (configs, not objects)."""
    files: set[Path] = set()
    for kfile in MANIFESTS.rglob("kustomization.yaml"):
        k = yaml.safe_load(kfile.read_text())
        for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
            files |= {(kfile.parent / f.split("=", 1)[-1]).resolve() for f in gen.get("files", [])}
    return files


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _strict(schema: dict) -> dict:
    """A CRD schema as the API server applies it with strict field validation: objects that list
    their properties (and do not preserve unknown fields) reject any other field."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((SCHEMAS / KSERVE_CRDS[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return jsonschema.Draft7Validator(_strict(entry["schema"]["openAPIV3Schema"]))


def validate(obj: dict) -> None:
    """Raise with a readable message if `obj` is not a valid object of its kind."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    name = f"{key[1]}/{obj.get('metadata', {}).get('name')}"
    if key in KSERVE_CRDS:
        errors = sorted(crd_validator(*key).iter_errors(obj), key=lambda e: list(e.absolute_path))
        assert not errors, f"{name}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
        # The CRD leaves metadata open; the API server does not.
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]},
                                     K8S_VERSION, strict=True)
    elif key == ("kafka.strimzi.io/v1beta2", "KafkaTopic"):
        jsonschema.validate(obj, KAFKA_TOPIC_SCHEMA)
    else:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{name}: {e.message} at {'/'.join(map(str, e.path))}") from None
        except kubernetes_validate.SchemaNotFoundError:
            raise AssertionError(f"{name}: no schema for {key}: add a validator for this kind") from None


# -- kustomize ------------------------------------------------------------------------------------

@functools.cache
def kustomize_command() -> tuple[str, ...]:
    """The kustomize binary `make kustomize` installs, else one on PATH, else `kubectl kustomize`."""
    candidates = [os.environ.get("MOVIEREC_KUSTOMIZE"),
                  str(Path.home() / ".cache" / "movierec" / "bin" / "kustomize"),
                  shutil.which("kustomize")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return (candidate, "build")
    if shutil.which("kubectl"):
        return ("kubectl", "kustomize")
    pytest.fail("no kustomize: run `make kustomize` (installs it with `go install`) or install kubectl")


@functools.cache
def build(target: str) -> tuple[dict, ...]:
    cmd = [*kustomize_command(), str(MANIFESTS / target)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d is not None)


def find(objs, kind: str, name: str) -> dict:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [spec["template"]["spec"]]
    if obj["kind"] == "ServingRuntime":
        return [spec]
    if obj["kind"] == "InferenceService":
        return [spec["predictor"]] + [c["predictor"] for c in spec.get("canary", [])]
    return []


def walk_values(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from walk_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_values(value)
    else:
        yield node


# -- every file ---------------------------------------------------------------------------------------

def test_manifest_folders_exist():
    for folder in ("kserve", "storage", "kafka", "kubeflow", "monitoring-infra", "overlays/dev", "overlays/prod"):
        assert (MANIFESTS / folder).is_dir(), folder


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_yaml_file_parses_and_every_object_validates(path):
    docs = documents(path)
    assert docs, f"{path} holds no document"
    if path.resolve() in generated_files():  # a config file mounted from a generated ConfigMap
        assert all(isinstance(doc, dict) for doc in docs), path
        return
    for doc in docs:
        assert isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc, f"{path}: not an object"
        if doc["kind"] in KUSTOMIZE_KINDS:
            continue
        validate(doc)


def test_every_manifest_file_is_part_of_a_build():
    """A manifest nobody's kustomization lists would never reach a cluster."""
    listed = generated_files()
    for kfile in MANIFESTS.rglob("kustomization.yaml"):
        k = yaml.safe_load(kfile.read_text())
        listed |= {(kfile.parent / entry).resolve() for entry in k.get("resources", [])}
    candidates = yaml_files() + sorted(MANIFESTS.rglob("*.json"))
    missing = [str(p.relative_to(MANIFESTS)) for p in candidates
               if p.name != "kustomization.yaml" and p.resolve() not in listed
               and str(p.relative_to(MANIFESTS)) not in NOT_IN_ANY_BUILD]
    assert not missing, f"not listed by any kustomization.yaml: {missing}"


# -- the validator itself has teeth --------------------------------------------------------------

def test_validator_rejects_an_unknown_inferenceservice_field():
    isvc = documents(MANIFESTS / "kserve" / "inferenceservice.yaml")[0]
    validate(isvc)
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["canaryTrafficPercnt"] = 10
    with pytest.raises(AssertionError, match="canaryTrafficPercnt"):
        validate(bad)
    bad = copy.deepcopy(isvc)
    bad["spec"]["canary"][0]["trafficPercent"] = "ten"
    with pytest.raises(AssertionError, match="trafficPercent"):
        validate(bad)


def test_validator_rejects_a_broken_core_object():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}
    with pytest.raises(AssertionError, match="Deployment/x"):
        validate(bad)
    with pytest.raises(AssertionError, match="no schema"):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


# -- the overlays, built ---------------------------------------------------------------------------

@pytest.mark.parametrize("target", ("base", *(f"overlays/{o}" for o in OVERLAYS)))
def test_build_validates_as_a_whole(target):
    objs = build(target)
    assert len(objs) > 10
    ids = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(ids) == len(set(ids)), "duplicate objects"
    for obj in objs:
        validate(obj)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_references_resolve(overlay):
    """ConfigMaps, Secrets, ServiceAccounts and the runtime that objects name exist in the build
    (after Kustomize's hash suffixes), unless the reference is marked optional."""
    objs = build(f"overlays/{overlay}")
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for obj in objs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        for spec in pod_specs(obj):
            if sa := spec.get("serviceAccountName"):
                assert ("ServiceAccount", sa) in names, f"{where}: ServiceAccount {sa}"
            for vol in spec.get("volumes", []):
                if "configMap" in vol and not vol["configMap"].get("optional"):
                    assert ("ConfigMap", vol["configMap"]["name"]) in names, f"{where}: {vol}"
                if "secret" in vol and not vol["secret"].get("optional"):
                    assert ("Secret", vol["secret"]["secretName"]) in names, f"{where}: {vol}"
            for container in spec.get("containers", []) + ([spec["model"]] if "model" in spec else []):
                for env in container.get("env", []):
                    for ref_kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                        src = env.get("valueFrom", {}).get(ref)
                        if src and not src.get("optional"):
                            assert (ref_kind, src["name"]) in names, f"{where}: {env['name']}"
                for env_from in container.get("envFrom", []):
                    if cm := env_from.get("configMapRef"):
                        assert ("ConfigMap", cm["name"]) in names, f"{where}: envFrom {cm}"
            if "model" in spec and (runtime := spec["model"].get("runtime")):
                assert ("ServingRuntime", runtime) in names, f"{where}: runtime {runtime}"
        if obj["kind"] == "ServiceAccount":
            for secret in obj.get("secrets", []):
                assert ("Secret", secret["name"]) in names


@pytest.mark.parametrize("overlay,namespace", [("dev", "movierec-dev"), ("prod", "movierec"),
                                               ("knative", "movierec")])
def test_overlay_puts_everything_in_its_namespace(overlay, namespace):
    objs = build(f"overlays/{overlay}")
    assert find(objs, "Namespace", namespace)
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]["name"]
    # In-cluster addresses that spell a namespace out must spell this one.
    for value in walk_values([o for o in objs if o["kind"] != "Namespace"]):
        if isinstance(value, str) and ".svc" in value and "minio." in value:
            assert f"minio.{namespace}.svc" in value, value
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        for subject in binding["subjects"]:
            assert subject.get("namespace", namespace) == namespace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay):
    for obj in build(f"overlays/{overlay}"):
        for spec in pod_specs(obj):
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                image = container.get("image")
                if image is None:
                    continue
                tag = image.rsplit("@", 1)[-1] if "@" in image else image.rsplit("/", 1)[-1].partition(":")[2]
                assert tag and tag != "latest", f"{obj['kind']}/{obj['metadata']['name']}: {image}"


def test_prod_serves_with_zero_downtime_and_a_standard_mode_canary():
    objs = build("overlays/prod")
    isvc = find(objs, "InferenceService", "movierec")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("Standard", "RawDeployment")
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] >= 2
    assert predictor["deploymentStrategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "canaryTrafficPercent" not in predictor, "ignored in Standard mode: use spec.canary"
    (canary,) = isvc["spec"]["canary"]
    assert canary["trafficPercent"] == 10
    assert canary["predictor"]["deploymentStrategy"]["rollingUpdate"]["maxUnavailable"] == 0
    runtime = find(objs, "ServingRuntime", "movierec-predictor")
    assert runtime["spec"]["containers"][0]["image"] == "movierec/predictor:0.1.0"
    assert find(objs, "KafkaTopic", "movie-events")["spec"]["partitions"] >= find(
        objs, "StatefulSet", "movierec-ingest")["spec"]["replicas"]
    assert not [o for o in objs if o["kind"] == "Job" and o["metadata"]["name"] == "movie-events-topic"], \
        "prod creates the topic with Strimzi, not the Job"


def test_dev_is_small_and_uses_its_own_store_prefix():
    objs = build("overlays/dev")
    isvc = find(objs, "InferenceService", "movierec")
    assert isvc["spec"]["predictor"]["minReplicas"] == 1
    assert isvc["spec"]["canary"][0]["trafficPercent"] == 50
    assert find(objs, "StatefulSet", "movierec-ingest")["spec"]["replicas"] == 1
    topic = find(objs, "ConfigMap", "movie-events-topic")["data"]
    assert topic["REPLICATION_FACTOR"] == "1" and topic["TOPIC"] == "movie-events"
    stores = [v for v in walk_values(list(objs)) if isinstance(v, str) and v.startswith("s3://movierec/")]
    assert stores and all(v.startswith("s3://movierec/dev") for v in stores), stores
    images = {c["image"] for o in objs for s in pod_specs(o) for c in s.get("containers", [])
              if c["image"].startswith("movierec/")}
    assert images == {"movierec/predictor:dev", "movierec/components:dev"}


def test_knative_overlay_matches_the_knative_variant():
    """overlays/knative turns the Standard InferenceService into the Knative-mode variant that
    kserve/inferenceservice-knative.yaml shows: the two must not drift apart."""
    built = find(build("overlays/knative"), "InferenceService", "movierec")
    (variant,) = documents(MANIFESTS / "kserve" / "inferenceservice-knative.yaml")
    assert built["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert "canary" not in built["spec"] and "deploymentStrategy" not in built["spec"]["predictor"]
    for key in ("canaryTrafficPercent", "serviceAccountName", "model"):
        assert built["spec"]["predictor"][key] == variant["spec"]["predictor"][key], key
    for key, value in variant["metadata"]["annotations"].items():
        assert built["metadata"]["annotations"][key] == value, key


# -- what the objects say ---------------------------------------------------------------------------

def test_event_topic_settings_agree_between_the_job_and_strimzi():
    settings = documents(MANIFESTS / "kafka" / "topic.yaml")[0]["data"]
    (topic,) = documents(MANIFESTS / "kafka" / "strimzi" / "kafkatopic.yaml")
    assert settings["TOPIC"] == topic["spec"]["topicName"] == "movie-events"
    assert int(settings["PARTITIONS"]) == topic["spec"]["partitions"]
    assert int(settings["REPLICATION_FACTOR"]) == topic["spec"]["replicas"]
    assert int(settings["RETENTION_MS"]) == topic["spec"]["config"]["retention.ms"] == 7 * 24 * 3600 * 1000
    assert int(settings["RETENTION_BYTES"]) == topic["spec"]["config"]["retention.bytes"]
    job = documents(MANIFESTS / "kafka" / "topic.yaml")[1]
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--create --if-not-exists" in script and "retention.ms" in script and "retention.bytes" in script


def test_pipeline_root_is_on_minio():
    launcher = find(documents(MANIFESTS / "kubeflow" / "pipeline-root.yaml"), "ConfigMap", "kfp-launcher")
    assert launcher["data"]["defaultPipelineRoot"].startswith("minio://mlpipeline/")


def test_retraining_schedule_names_options_of_the_schedule_command():
    import typer.main

    from movierec.cli import app

    pipeline = typer.main.get_command(app).commands["pipeline"]
    options = {p.name for p in pipeline.commands["schedule"].params}
    schedule = find(documents(MANIFESTS / "kubeflow" / "pipeline-root.yaml"), "ConfigMap", "movierec-retraining")
    assert set(schedule["data"]) <= options, set(schedule["data"]) - options
    launcher = find(documents(MANIFESTS / "kubeflow" / "pipeline-root.yaml"), "ConfigMap", "kfp-launcher")
    assert schedule["data"]["pipeline_root"] == launcher["data"]["defaultPipelineRoot"]


def prometheus_config() -> dict:
    cm = find(documents(MANIFESTS / "monitoring-infra" / "prometheus.yaml"), "ConfigMap", "prometheus-config")
    return yaml.safe_load(cm["data"]["prometheus.yml"])


def test_prometheus_scrapes_every_part_of_the_platform():
    jobs = {job["job_name"] for job in prometheus_config()["scrape_configs"]}
    assert {"movierec-predictor", "movierec-ingest", "movierec-online-eval", "node-exporter",
            "pushgateway"} <= jobs


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make test-tools installs Debian's prometheus package)")
    # Debian builds Prometheus without Kubernetes service discovery, so its promtool does not know
    # kubernetes_sd_configs: check everything else, with file discovery standing in for it.
    scrape = prometheus_config()
    for job in scrape["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape).replace("/etc/prometheus/rules", str(tmp_path / "rules")))
    done = subprocess.run([promtool, "check", "config", "--syntax-only", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scrape_targets_carry_the_labels_prometheus_keeps():
    objs = build("overlays/prod")
    for name in ("movierec-ingest", "movierec-online-eval"):
        workload = next(o for o in objs if o["metadata"]["name"] == name and o["kind"] in ("StatefulSet", "Deployment"))
        template = workload["spec"]["template"]
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == name
        ports = [p for c in template["spec"]["containers"] for p in c.get("ports", [])]
        assert any(p.get("name") == "metrics" for p in ports), name
    assert find(objs, "Service", "node-exporter")
    assert find(objs, "Service", "pushgateway")["spec"]["ports"][0]["port"] == 9091


def test_alertmanager_mounts_what_its_configuration_reads():
    """The Deployment (monitoring-infra) and the configuration (monitoring) are written apart:
    the config file path, the Slack webhook file and its Secret must meet."""
    objs = build("overlays/prod")
    config = yaml.safe_load((MANIFESTS / "monitoring" / "alertmanager.yml").read_text())
    url_file = Path(config["global"]["slack_api_url_file"])
    (secret,) = documents(MANIFESTS / "monitoring" / "alertmanager-slack-secret.yaml")
    spec = find(objs, "Deployment", "alertmanager")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {Path(m["mountPath"]): volumes[m["name"]] for m in container["volumeMounts"]}
    config_file = Path(next(a for a in container["args"] if a.startswith("--config.file=")).split("=", 1)[1])
    assert mounts[config_file.parent]["configMap"]["name"].startswith("alertmanager-config")
    assert config_file.name in find(objs, "ConfigMap", mounts[config_file.parent]["configMap"]["name"])["data"]
    assert mounts[url_file.parent]["secret"]["secretName"] == secret["metadata"]["name"]
    assert url_file.name in secret["stringData"]


def test_prometheus_and_grafana_mount_the_generated_configmaps():
    objs = build("overlays/prod")
    names = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    rules = find(objs, "ConfigMap", "prometheus-rules")["data"]
    assert rules and all(yaml.safe_load(text)["groups"] for text in rules.values())
    assert find(objs, "ConfigMap", "grafana-dashboards")["data"]
    for deployment in ("prometheus", "grafana"):
        spec = find(objs, "Deployment", deployment)["spec"]["template"]["spec"]
        for vol in spec["volumes"]:
            if "configMap" in vol:
                assert vol["configMap"]["name"] in names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_event_topic_everywhere(overlay):
    """The predictor logs requests, ingest reads and the pipeline runs on the topic that the
    topic job (or KafkaTopic) creates, on the same bootstrap servers."""
    objs = build(f"overlays/{overlay}")
    settings = find(objs, "ConfigMap", "movie-events-topic")["data"]
    expected = f"kafka://{settings['KAFKA_BOOTSTRAP']}/{settings['TOPIC']}"
    uris = {v for v in walk_values(list(objs)) if isinstance(v, str) and v.startswith("kafka://")}
    assert uris == {expected}, uris
    makefile = (ROOT / "Makefile").read_text()
    assert f"EVENTS_SOURCE ?= {expected}" in makefile
