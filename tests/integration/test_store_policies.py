"""Each service's object-store policy (manifests/storage/policies/, the MinIO policies the
`minio-setup` Job attaches to its user) holds against a real S3 server.

SeaweedFS has no MinIO policy documents, but its identities take per-prefix actions
(`Read:bucket/prefix*`, `Write:...`, `List:bucket`): each policy statement is translated into
those, a SeaweedFS runs with one identity per service, and the project's own store client, with
that identity's keys, does what the service does and is refused what it must not do. What
SeaweedFS cannot express is named: a delete is a `Write` there, and `s3:ListBucket` lists the
whole bucket in both servers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from components.core import layout
from components.core.store import S3Store, StoreError
from tests.servers import SeaweedFS, start_or_fail

pytestmark = pytest.mark.integration

POLICIES = Path(__file__).resolve().parents[2] / "manifests" / "storage" / "policies"
BUCKET_ARN = "arn:aws:s3:::movierec"
BUCKET, PREFIX = "movierec-policies", "prod"
REGION = "us-east-1"  # set in the manifests too: without it the client asks the bucket's location first
TO_SEAWEED = {"s3:GetObject": "Read", "s3:PutObject": "Write", "s3:DeleteObject": "Write", "s3:ListBucket": "List"}
SERVICES = ("predictor", "ingest", "pipeline", "online-eval")

MODEL = layout.model_key("svd-a", "card.json")
SNAPSHOT = layout.snapshot_key("watch", "2026-03-18", "movie-events-0", 0, 9)
ONLINE = layout.ONLINE_LATEST
CHECKPOINT = layout.checkpoint_key("events.log")
SEED = (MODEL, layout.ROLLOUT, SNAPSHOT, ONLINE, CHECKPOINT)

# What each service must be able to do, and what it must be refused (the table).
MAY_READ = {"predictor": {MODEL, layout.ROLLOUT}, "ingest": {SNAPSHOT, CHECKPOINT},
            "pipeline": set(SEED), "online-eval": set(SEED)}
MAY_WRITE = {"predictor": set(), "ingest": {SNAPSHOT, CHECKPOINT},
             "pipeline": {MODEL, SNAPSHOT, CHECKPOINT, layout.ROLLOUT}, "online-eval": {ONLINE, layout.ROLLOUT}}


def policy(service: str) -> dict:
    return json.loads((POLICIES / f"{service}.json").read_text())


def seaweed_actions(doc: dict, bucket: str, prefix: str) -> list[str]:
    """The SeaweedFS identity actions that grant what a MinIO policy grants, on `bucket/prefix`
    (the policies name the bucket `movierec` and any store prefix as `*`)."""
    actions = []
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow" and "Condition" not in statement, statement
        for resource in statement["Resource"]:
            if resource == BUCKET_ARN:
                target = bucket
            else:
                rest = resource.removeprefix(f"{BUCKET_ARN}/*")
                assert rest != resource, f"unexpected resource {resource}"
                target = f"{bucket}/{prefix}{rest}" + ("" if rest.endswith("*") else "*")
            for action in statement["Action"]:
                actions.append(f"{TO_SEAWEED[action]}:{target}")
    return sorted(set(actions))


@pytest.fixture(scope="module")
def s3_with_identities():
    server = start_or_fail(SeaweedFS(identities={s: seaweed_actions(policy(s), BUCKET, PREFIX) for s in SERVICES}),
                           "SeaweedFS with service identities")
    admin = S3Store(BUCKET, PREFIX, endpoint=server.endpoint, access_key=server.access_key,
                    secret_key=server.secret_key, region=REGION)
    for key in SEED:
        admin.put_bytes(key, b"{}")
    yield server
    server.close()


def store_as(server: SeaweedFS, service: str) -> S3Store:
    access_key, secret_key = server.keys[service]
    return S3Store(BUCKET, PREFIX, endpoint=server.endpoint, access_key=access_key, secret_key=secret_key,
                   region=REGION, create_bucket=False)


def refused(call) -> bool:
    from minio.error import S3Error

    try:
        call()
    except (S3Error, StoreError) as exc:
        assert "AccessDenied" in str(exc), exc
        return True
    return False


def test_every_service_has_a_policy_and_nothing_more():
    assert sorted(p.stem for p in POLICIES.glob("*.json")) == sorted(SERVICES)
    for service in SERVICES:
        for statement in policy(service)["Statement"]:
            assert "*" not in "".join(statement["Action"]), f"{service}: wildcard action"
            assert all(r.startswith(BUCKET_ARN) for r in statement["Resource"]), service


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reads_and_writes_what_it_must(s3_with_identities, service):
    store = store_as(s3_with_identities, service)
    for key in sorted(MAY_READ[service]):
        assert store.get_bytes(key) is not None, key
    for key in sorted(MAY_WRITE[service]):
        store.put_bytes(key, b"{}")
    assert store.list(layout.models_prefix()) == [MODEL]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_is_refused_everything_else(s3_with_identities, service):
    store = store_as(s3_with_identities, service)
    for key in sorted(set(SEED) - MAY_READ[service]):
        assert refused(lambda k=key: store.get_bytes(k)), f"{service} could read {key}"
    for key in sorted(set(SEED) - MAY_WRITE[service]) + ["elsewhere/x.json"]:
        assert refused(lambda k=key: store.put_bytes(k, b"tampered")), f"{service} could write {key}"
        assert refused(lambda k=key: store.delete(k)), f"{service} could delete {key}"


def test_the_predictor_cannot_rewrite_the_rollout_or_a_model(s3_with_identities):
    """The issue's threat: a compromised predictor rewriting rollout.json or a model version."""
    predictor = store_as(s3_with_identities, "predictor")
    assert predictor.get_json(layout.ROLLOUT) == {}
    assert refused(lambda: predictor.put_json(layout.ROLLOUT, {"stable": "evil"}))
    assert refused(lambda: predictor.put_bytes(layout.model_key("svd-a", "factors.npz"), b"evil"))
    assert refused(lambda: predictor.put_bytes(layout.model_key("evil-1", "card.json"), b"{}"))
    client = s3_with_identities.client(*s3_with_identities.keys["predictor"])
    assert refused(lambda: client.put_object(BUCKET, "other/x", io.BytesIO(b"x"), 1))
    assert refused(lambda: client.make_bucket("predictor-made-this"))


def test_a_wrong_secret_is_refused_before_any_object_call(s3_with_identities):
    access_key, _ = s3_with_identities.keys["online-eval"]
    with pytest.raises(StoreError, match="SignatureDoesNotMatch|InvalidAccessKeyId"):
        S3Store(BUCKET, PREFIX, endpoint=s3_with_identities.endpoint, access_key=access_key,
                secret_key="x" * 40, region=REGION, create_bucket=False)
