"""Least privilege in the manifests, checked on every overlay as Kustomize builds it: hardened pods,
no API token where none is needed, no usable default secret, one object-store identity per
service, and NetworkPolicies that open only the flows the platform needs.

The policies themselves are exercised against a real S3 server in
tests/integration/test_store_policies.py.
"""

from __future__ import annotations

import json

import pytest

from tests.unit.deploy.test_manifests import OVERLAYS, build, find, pod_specs

# The one pod that talks to the Kubernetes API (service discovery).
API_CLIENTS = {("Deployment", "prometheus")}
SERVICE_SECRETS = {"predictor": "movierec-s3-predictor", "ingest": "movierec-s3-ingest",
                   "pipeline": "movierec-s3-pipeline", "online-eval": "movierec-s3-online-eval"}
ROOT_SECRET = "movierec-minio-root"


def workloads(objs):
    for obj in objs:
        for spec in pod_specs(obj):
            yield obj, spec


def containers(obj, spec) -> list[dict]:
    if obj["kind"] == "InferenceService":
        return []  # its containers come from the ServingRuntime, checked there
    return spec.get("containers", []) + spec.get("initContainers", [])


def labels_of(obj) -> dict:
    if obj["kind"] == "InferenceService":  # KServe labels the predictor pods with the service name
        return {"serving.kserve.io/inferenceservice": obj["metadata"]["name"]}
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["metadata"].get("labels", {})
    return {}


def secret_refs(spec) -> set[str]:
    refs = set()
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for env in container.get("env", []):
            if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                refs.add(ref["name"])
        for env_from in container.get("envFrom", []):
            if ref := env_from.get("secretRef"):
                refs.add(ref["name"])
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened(overlay):
    for obj, spec in workloads(build(f"overlays/{overlay}")):
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        pod = spec.get("securityContext", {})
        if obj["kind"] != "ServingRuntime":  # a runtime has no pod securityContext: the ISVC sets it
            assert pod.get("runAsNonRoot") is True, where
            assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for container in containers(obj, spec):
            ctx = container.get("securityContext", {})
            what = f"{where} container {container['name']}"
            assert ctx.get("allowPrivilegeEscalation") is False, what
            assert ctx.get("readOnlyRootFilesystem") is True, what
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], what
            assert not ctx.get("capabilities", {}).get("add"), what
            assert not ctx.get("privileged"), what
            if obj["kind"] == "ServingRuntime":
                assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", what


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_service_account_token_where_none_is_needed(overlay):
    objs = build(f"overlays/{overlay}")
    accounts = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    for obj, spec in workloads(objs):
        if obj["kind"] == "ServingRuntime":
            continue
        key = (obj["kind"], obj["metadata"]["name"])
        account = spec.get("serviceAccountName", "default")
        mounted = spec.get("automountServiceAccountToken",
                           accounts.get(account, {}).get("automountServiceAccountToken", True))
        assert mounted is (key in API_CLIENTS), f"{overlay}: {key} token mounted={mounted}"
    for name, account in accounts.items():
        if name != "prometheus":
            assert account.get("automountServiceAccountToken") is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_overlay_ships_a_usable_secret(overlay):
    """Secrets are shells (names, KServe's annotations): their values come from outside, so a deploy
    without real secrets stops at the missing keys instead of running on public credentials."""
    objs = build(f"overlays/{overlay}")
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} >= {ROOT_SECRET, "grafana-admin", *SERVICE_SECRETS.values()}
    for secret in secrets:
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]["name"]
    for obj, spec in workloads(objs):
        for container in spec.get("containers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == KAFKA_CLIENT_SECRET:
                    continue  # SASL/TLS settings where the cluster's Kafka asks for them (else PLAINTEXT)
                assert not (ref and ref.get("optional")), f"{obj['metadata']['name']}: optional secret {ref}"


KAFKA_CLIENT_SECRET = "movierec-kafka"  # optional: a cluster whose Kafka has no SASL gives none


def test_grafana_requires_its_admin_secret():
    grafana = find(build("overlays/prod"), "Deployment", "grafana")
    env = {e["name"]: e for e in grafana["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "grafana-admin" and not ref.get("optional"), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_uses_its_own_store_identity(overlay):
    objs = build(f"overlays/{overlay}")
    uses = {(o["kind"], o["metadata"]["name"]): secret_refs(s) for o, s in workloads(objs)}
    assert uses[("ServingRuntime", "movierec-predictor")] == {SERVICE_SECRETS["predictor"]}
    assert uses[("StatefulSet", "movierec-ingest")] == {SERVICE_SECRETS["ingest"], KAFKA_CLIENT_SECRET}
    assert uses[("Deployment", "movierec-online-eval")] == {SERVICE_SECRETS["online-eval"]}
    assert uses[("Deployment", "minio")] == {ROOT_SECRET}
    assert uses[("Job", "minio-setup")] == {ROOT_SECRET, *SERVICE_SECRETS.values()}
    for key, refs in uses.items():
        if key not in {("Deployment", "minio"), ("Job", "minio-setup")}:
            assert ROOT_SECRET not in refs, f"{key} sees MinIO's root credentials"
    sa = find(objs, "ServiceAccount", "movierec-predictor")
    assert [s["name"] for s in sa["secrets"]] == [SERVICE_SECRETS["predictor"]]
    schedule = find(objs, "ConfigMap", "movierec-retraining")["data"]
    assert schedule["s3_secret"] == SERVICE_SECRETS["pipeline"]
    # the setup Job creates each policy of storage/policies/ for the user of that service's Secret
    job = find(objs, "Job", "minio-setup")["spec"]["template"]["spec"]
    script = job["containers"][0]["args"][0]
    policies = find(objs, "ConfigMap", "minio-policies")["data"]
    assert set(policies) == {f"{service}.json" for service in SERVICE_SECRETS}
    for service in SERVICE_SECRETS:
        json.loads(policies[f"{service}.json"])
        assert f"service_user {service} " in script, service


def test_deploys_without_secret_values_are_refused_by_make(tmp_path):
    """deploy-canary checks, before applying, that every Secret it needs has its keys."""
    from tests.unit.deploy.test_jenkinsfile import make

    fake = tmp_path / "kubectl"
    fake.write_text("#!/bin/sh\n# a cluster whose Secrets are empty shells\n"
                    "case \"$*\" in *jsonpath*) exit 0;; *) exit 0;; esac\n")
    fake.chmod(0o755)
    done = make("deploy-canary", f"BUILD_DIR={tmp_path / 'build'}", f"KUBECTL={fake}", timeout=300)
    assert done.returncode != 0
    assert "movierec-s3-predictor" in done.stderr and "AWS_SECRET_ACCESS_KEY" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


# -- NetworkPolicies ---------------------------------------------------------------------------------

def matches(selector: dict, labels: dict) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] in ("In", "NotIn", "Exists"), expr
        present = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not present:
            return False
    return True


def policies(objs) -> list[dict]:
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


def allowed(objs, source: str | None, target: str, port: int) -> bool:
    """Whether some policy lets pods of workload `source` (None: anyone) reach `target` on `port`."""
    pods = {o["metadata"]["name"]: labels_of(o) for o in objs if labels_of(o)}
    for policy in policies(objs):
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or not matches(spec["podSelector"], pods[target]):
            continue
        for rule in spec.get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            if not peers:
                return True
            if source and any("podSelector" in p and "namespaceSelector" not in p
                              and matches(p["podSelector"], pods[source]) for p in peers):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_is_denied_unless_a_flow_is_opened(overlay):
    objs = build(f"overlays/{overlay}")
    deny = find(objs, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    # every policy selects pods that exist
    pods = [labels_of(o) for o in objs if labels_of(o)]
    for policy in policies(objs):
        if policy["metadata"]["name"] != "default-deny-ingress":
            assert any(matches(policy["spec"]["podSelector"], labels) for labels in pods), policy["metadata"]


@pytest.mark.parametrize("source,target,port,ok", [
    ("movierec", "minio", 9000, True), ("movierec-ingest", "minio", 9000, True),
    ("movierec-online-eval", "minio", 9000, True), ("minio-setup", "minio", 9000, True),
    ("grafana", "minio", 9000, False), ("prometheus", "minio", 9000, False),
    ("movierec-ingest", "minio", 9001, False),
    (None, "movierec", 8080, True), ("prometheus", "movierec-ingest", 8000, True),
    ("prometheus", "movierec-online-eval", 8001, True), ("movierec", "movierec-online-eval", 8001, False),
    (None, "movierec-ingest", 8000, False), ("grafana", "prometheus", 9090, True),
    ("movierec", "prometheus", 9090, False), ("prometheus", "alertmanager", 9093, True),
    ("movierec", "alertmanager", 9093, False), ("prometheus", "pushgateway", 9091, True),
    (None, "grafana", 3000, True), (None, "minio", 9000, False),
])
def test_network_flows(source, target, port, ok):
    assert allowed(build("overlays/prod"), source, target, port) is ok


def test_the_predictor_reaches_only_minio_kafka_and_dns():
    egress = find(build("overlays/prod"), "NetworkPolicy", "predictor-egress")["spec"]
    assert egress["policyTypes"] == ["Egress"]
    ports = sorted(p["port"] for rule in egress["egress"] for p in rule["ports"])
    assert ports == [53, 53, 9000, 9092]


@pytest.mark.parametrize("overlay", ["prod", "knative"])
def test_production_pins_third_party_images_by_digest(overlay):
    """A tag can be moved under a running cluster; a digest cannot. The movierec images are the
    release's own, tagged by the build (KServe's canary `runtimeVersion` takes a tag)."""
    for obj, spec in workloads(build(f"overlays/{overlay}")):
        for container in containers(obj, spec):
            image = container["image"]
            if image.startswith("movierec/"):
                continue
            name, _, digest = image.partition("@")
            assert digest.startswith("sha256:") and len(digest) == 7 + 64, f"{obj['metadata']['name']}: {image}"
            assert ":" in name.rsplit("/", 1)[-1], f"{image}: keep the tag beside the digest for people"


def test_knative_lets_requests_through_the_queue_proxy():
    assert allowed(build("overlays/knative"), None, "movierec", 8012)
    assert not allowed(build("overlays/prod"), None, "movierec", 8012)
