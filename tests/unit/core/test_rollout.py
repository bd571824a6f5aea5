"""The rollout state: a stable user->version assignment, the canary share, and the operations."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from components.core import layout, rollout
from components.core.rollout import BUCKETS, RolloutError, RolloutState, in_canary, user_bucket

# Fixed forever: changing the hash would move users between versions mid-experiment.
EXPECTED_BUCKETS = {0: 8789, 1: 3910, 2: 1100, 42: 1738, 1000: 3474, 123456789: 4737, 2**63 - 1: 3209}
SALTED_BUCKETS = [7134, 5978, 4014]  # user_bucket(u, "00000000deadbeef") for u in (0, 1, 42)


def test_buckets_are_fixed():
    assert {u: user_bucket(u) for u in EXPECTED_BUCKETS} == EXPECTED_BUCKETS


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_buckets_are_the_same_in_another_process(hash_seed):
    code = ("import json, sys; from components.core.rollout import user_bucket; "
            "print(json.dumps({str(u): user_bucket(u) for u in json.loads(sys.argv[1])}))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(list(EXPECTED_BUCKETS))],
                         capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "PYTHONHASHSEED": hash_seed})
    assert {int(k): v for k, v in json.loads(out.stdout).items()} == EXPECTED_BUCKETS


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 90])
def test_canary_share_over_100k_users(percent):
    share = sum(in_canary(u, percent) for u in range(1, 100_001)) / 100_000
    assert share == pytest.approx(percent / 100, abs=0.005)


def test_raising_the_share_only_adds_users():
    users = range(1, 20_001)
    at_5 = {u for u in users if in_canary(u, 5)}
    at_20 = {u for u in users if in_canary(u, 20)}
    assert at_5 < at_20
    assert not any(in_canary(u, 0) for u in users)
    assert all(in_canary(u, 100) for u in users)
    assert all(0 <= user_bucket(u) < BUCKETS for u in users)


def test_route_follows_the_bucket():
    state = RolloutState(stable="v1", canary="v2", canary_percent=30)
    for u in range(1, 2000):
        assert state.route(u) == ("v2" if in_canary(u, 30) else "v1")
    assert RolloutState().route(1) is None
    assert RolloutState(stable="v1", canary="v2", canary_percent=0).route(7) == "v1"
    assert RolloutState(stable="v1", canary="v2", canary_percent=100).route(7) == "v2"
    assert RolloutState(stable="v1").versions() == ["v1"]


def test_empty_store_has_nothing_deployed(local_store):
    state = rollout.load(local_store)
    assert (state.stable, state.canary, state.canary_percent, state.history) == (None, None, 0.0, [])


def test_stable_canary_promote(local_store):
    rollout.set_stable(local_store, "v1", reason="first")
    state = rollout.start_canary(local_store, "v2", 10, reason="new model")
    assert (state.stable, state.canary, state.canary_percent) == ("v1", "v2", 10.0)
    loaded = rollout.load(local_store)  # what every predictor process reads
    assert loaded.to_dict() == state.to_dict()
    assert json.loads(local_store.get_bytes(layout.ROLLOUT))["canary"] == "v2"

    state = rollout.promote(local_store, reason="canary won")
    assert (state.stable, state.canary, state.canary_percent) == ("v2", None, 0.0)
    actions = [h["action"] for h in rollout.load(local_store).history]
    assert actions == ["stable", "canary", "promote"]
    assert rollout.load(local_store).history[-1]["previous"] == "v1"
    assert state.updated_at


def test_rollback_keeps_stable(local_store):
    rollout.set_stable(local_store, "v1")
    rollout.start_canary(local_store, "v2", 50)
    state = rollout.rollback(local_store, reason="worse hit rate")
    assert (state.stable, state.canary, state.canary_percent) == ("v1", None, 0.0)
    assert state.history[-1]["withdrawn"] == "v2"
    assert state.history[-1]["reason"] == "worse hit rate"


def test_set_stable_to_the_canary_clears_the_canary(local_store):
    rollout.set_stable(local_store, "v1")
    rollout.start_canary(local_store, "v2", 20)
    state = rollout.set_stable(local_store, "v2")
    assert (state.stable, state.canary, state.canary_percent) == ("v2", None, 0.0)


def test_a_new_canary_replaces_the_old_one(local_store):
    rollout.set_stable(local_store, "v1")
    rollout.start_canary(local_store, "v2", 20)
    state = rollout.start_canary(local_store, "v3", 5)
    assert (state.stable, state.canary, state.canary_percent) == ("v1", "v3", 5.0)


def test_operation_errors(local_store):
    with pytest.raises(RolloutError, match="no stable version"):
        rollout.start_canary(local_store, "v2", 10)
    with pytest.raises(RolloutError, match="no canary to promote"):
        rollout.promote(local_store)
    with pytest.raises(RolloutError, match="no canary to roll back"):
        rollout.rollback(local_store)
    rollout.set_stable(local_store, "v1")
    with pytest.raises(RolloutError, match="already the stable"):
        rollout.start_canary(local_store, "v1", 10)
    for percent in (-1, 100.5, 1000):
        with pytest.raises(RolloutError, match="0-100"):
            rollout.start_canary(local_store, "v2", percent)
    with pytest.raises(ValueError, match="invalid model version"):
        rollout.set_stable(local_store, "Bad Version")
    with pytest.raises(ValueError, match="invalid model version"):
        rollout.start_canary(local_store, "../v2", 10)
    assert rollout.load(local_store).stable == "v1"  # failed operations changed nothing


def test_history_is_bounded(local_store):
    for i in range(104):
        rollout.set_stable(local_store, f"v{i}")
    history = rollout.load(local_store).history
    assert len(history) == 100 and history[-1]["version"] == "v103"


def test_from_dict_tolerates_missing_fields():
    state = RolloutState.from_dict({"stable": "v1"})
    assert (state.stable, state.canary, state.canary_percent, state.history) == ("v1", None, 0.0, [])
    assert RolloutState.from_dict(state.to_dict()) == state


# -- per-experiment salt ------------------------------------------------------------------------------
def test_salted_buckets_are_fixed_and_differ_from_unsalted():
    # Fixed forever for a given salt: the canary analysis recomputes the assignment from it.
    assert [user_bucket(u, "00000000deadbeef") for u in (0, 1, 42)] == SALTED_BUCKETS
    assert [user_bucket(u, "") for u in EXPECTED_BUCKETS] == list(EXPECTED_BUCKETS.values())


def test_each_experiment_draws_a_fresh_set_of_users():
    users = range(1, 20_001)
    first = {u for u in users if in_canary(u, 10, "exp-a")}
    second = {u for u in users if in_canary(u, 10, "exp-b")}
    assert len(first) == pytest.approx(2000, abs=150) and len(second) == pytest.approx(2000, abs=150)
    # independent draws: about 10 % of the first canary's users are in the second, not all of them
    assert len(first & second) / len(first) == pytest.approx(0.10, abs=0.03)


def test_a_new_canary_gets_a_fresh_salt_and_a_new_share_keeps_it(local_store):
    rollout.set_stable(local_store, "v1")
    first = rollout.start_canary(local_store, "v2", 5)
    assert len(first.experiment) == 16 and first.canary_started_at
    ramped = rollout.start_canary(local_store, "v2", 20)
    assert (ramped.experiment, ramped.canary_started_at) == (first.experiment, first.canary_started_at)
    assert {u for u in range(5000) if ramped.route(u) == "v2"} > {u for u in range(5000) if first.route(u) == "v2"}
    second = rollout.start_canary(local_store, "v3", 20)
    assert second.experiment not in ("", first.experiment)
    assert rollout.load(local_store).experiment == second.experiment
    assert [h["experiment"] for h in rollout.load(local_store).history[1:]] == [first.experiment] * 2 + [
        second.experiment]
    promoted = rollout.promote(local_store)
    assert (promoted.experiment, promoted.canary_started_at) == ("", "")


def test_route_uses_the_experiment_salt():
    state = RolloutState(stable="v1", canary="v2", canary_percent=30, experiment="abc")
    assert all(state.route(u) == ("v2" if in_canary(u, 30, "abc") else "v1") for u in range(2000))
    assert [state.route(u) for u in range(2000)] != [RolloutState(stable="v1", canary="v2", canary_percent=30)
                                                     .route(u) for u in range(2000)]


def test_a_state_written_before_salts_keeps_its_unsalted_assignment(local_store):
    local_store.put_json(layout.ROLLOUT, {"stable": "v1", "canary": "v2", "canary_percent": 30.0,
                                          "updated_at": "2026-01-01T00:00:00+00:00", "history": []})
    state = rollout.load(local_store)
    assert state.experiment == ""
    assert all(state.route(u) == ("v2" if in_canary(u, 30) else "v1") for u in range(2000))
    assert rollout.start_canary(local_store, "v2", 50).experiment == ""  # ramping keeps the old assignment


# -- validated on read --------------------------------------------------------------------------------
VALID = '{"stable": "v1", "canary": "v2", "canary_percent": 30.0, "updated_at": "", "history": []}'
INVALID = {
    "share 1e400 (infinite)": VALID.replace("30.0", "1e400"),
    "share NaN": VALID.replace("30.0", "NaN"),
    "share -Infinity": VALID.replace("30.0", "-Infinity"),
    "negative share": VALID.replace("30.0", "-5"),
    "share over 100": VALID.replace("30.0", "100.5"),
    "share as a string": VALID.replace("30.0", '"30"'),
    "share true": VALID.replace("30.0", "true"),
    "unknown version format": VALID.replace('"v2"', '"../v2"'),
    "version not a string": VALID.replace('"v1"', "1"),
    "uppercase version": VALID.replace('"v1"', '"V1"'),
    "canary is the stable": VALID.replace('"v2"', '"v1"'),
    "truncated JSON": VALID[:40],
    "empty file": "",
    "not an object": "[1, 2]",
    "history not a list": VALID.replace('"history": []', '"history": 5'),
    "experiment not a string": VALID.replace('"history": []', '"history": [], "experiment": 7'),
    "experiment with a newline": VALID.replace('"history": []', '"history": [], "experiment": "a\\nb"'),
    "not UTF-8": b'{"stable": "\xff"}',
}


@pytest.mark.parametrize("raw", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_state_is_refused_on_read(local_store, raw):
    local_store.put_bytes(layout.ROLLOUT, raw if isinstance(raw, bytes) else raw.encode())
    with pytest.raises(rollout.InvalidRolloutState, match="rollout.json .* is invalid .*rollout stable VERSION"):
        rollout.load(local_store)
    for act in (lambda: rollout.start_canary(local_store, "v3", 10), lambda: rollout.promote(local_store),
                lambda: rollout.rollback(local_store)):
        with pytest.raises(rollout.InvalidRolloutState):   # nothing acts on a state it cannot trust
            act()


def test_a_valid_state_passes_and_stable_repairs_an_invalid_one(local_store):
    local_store.put_bytes(layout.ROLLOUT, VALID.encode())
    assert rollout.load(local_store).canary_percent == 30.0
    local_store.put_bytes(layout.ROLLOUT, VALID.replace("30.0", "NaN").encode())
    state = rollout.set_stable(local_store, "v1", reason="repair")
    assert (state.stable, state.canary) == ("v1", None)
    assert "canary_percent" in rollout.load(local_store).history[-1]["replaced_invalid_state"]


def test_rollout_errors_are_user_errors():
    from components.core.errors import UserError

    assert issubclass(rollout.InvalidRolloutState, UserError) and issubclass(RolloutError, ValueError)
