"""The publish gate's decisions, what publish writes (the version and its card) and what release
does with the chosen one (refit, deploy: the rollout state)."""

from __future__ import annotations

import numpy as np
import pytest

from components.core import rollout
from components.core.model_artifact import ArtifactError, FactorModel, ModelCard, list_versions, load_card
from components.core.store import LocalStore
from components.training.publish import gate, publish, release, resolve_model, stable_reference, to_release


def test_beats_baseline_without_stable():
    d = gate({"ndcg@20": 0.30}, {"ndcg@20": 0.20})
    assert d.candidate
    assert "beats the popularity baseline" in d.reasons[0]
    assert "no stable version" in d.reasons[1]


def test_does_not_beat_baseline():
    d = gate({"ndcg@20": 0.20}, {"ndcg@20": 0.20})            # a tie is not a win
    assert not d.candidate
    assert "does not beat the popularity baseline" in d.reasons[0]


def test_behind_stable_within_margin():
    d = gate({"ndcg@20": 0.295}, {"ndcg@20": 0.2}, {"ndcg@20": 0.30}, margin=0.01, stable_version="v1",
             stable_source="re-evaluated on this split")
    assert d.candidate and d.stable_value == 0.30
    assert "within 0.01 of stable v1" in d.reasons[1]


def test_ahead_of_stable():
    d = gate({"ndcg@20": 0.35}, {"ndcg@20": 0.2}, {"ndcg@20": 0.30}, stable_version="v1")
    assert d.candidate and "at least as good as stable v1" in d.reasons[1]


def test_behind_stable_beyond_margin():
    d = gate({"ndcg@20": 0.28}, {"ndcg@20": 0.2}, {"ndcg@20": 0.30}, margin=0.01, stable_version="v1")
    assert not d.candidate
    assert "trails stable v1 by 0.0200 > margin 0.01" in d.reasons[1]


def test_missing_metrics_never_pass():
    assert not gate({}, {"ndcg@20": 0.1}).candidate
    assert not gate({"ndcg@20": 0.3}, {}).candidate
    d = gate({"ndcg@20": 0.3}, {"ndcg@20": 0.1}, {}, stable_version="v1")
    assert d.candidate and "comparison skipped" in d.reasons[1]


def _model(seed: int = 0) -> FactorModel:
    rng = np.random.default_rng(seed)
    return FactorModel(global_mean=3.5, user_bias=np.zeros(3), item_bias=rng.normal(size=4),
                       user_factors=rng.normal(size=(3, 2)), item_factors=rng.normal(size=(4, 2)),
                       user_ids=[1, 2, 3], movie_ids=list("abcd"), seen_indptr=[0, 0, 0, 0], seen_indices=[],
                       popular=[0, 1, 2, 3])


def _evaluation(value: float, baseline: float = 0.2, stable: tuple[str, float] | None = None) -> dict:
    ev = {"k": 20, "primary_metric": "ndcg@20", "snapshot": "s1",
          "candidate": {"name": "x", "metrics": {"ndcg@20": value, "rmse": 0.9},
                        "by_activity": {"heavy": {"users": 5.0, "ndcg@20": value}}},
          "baseline": {"name": "popularity", "metrics": {"ndcg@20": baseline}}, "references": {}}
    if stable:
        ev["references"]["stable"] = {"name": stable[0], "metrics": {"ndcg@20": stable[1]}}
    return ev


def test_publish_writes_the_card_and_release_deploys_first_as_stable_then_canary(tmp_path):
    store = LocalStore(tmp_path)
    first = publish(store, _model(), ModelCard(version="svd-1", algorithm="svd", data_snapshot="s1"),
                    _evaluation(0.30), pipeline_run="run-1")
    assert first.decision.candidate and first.deployed is None and rollout.load(store).stable is None
    card = load_card(store, "svd-1")
    assert card.metrics["ndcg@20"] == 0.30 and card.metrics["baseline_ndcg@20"] == 0.2
    assert card.metrics["heavy_ndcg@20"] == 0.30
    assert card.gate["candidate"] and "deployed" not in card.gate and card.pipeline_run == "run-1"
    assert FactorModel.load(store, "svd-1")[1].gate == card.gate
    released = release(store, "svd-1", deploy="canary", canary_percent=25)
    assert released.deployed == "stable" and released.served == "svd-1" and released.decision.candidate
    assert rollout.deployment_of(rollout.load(store), "svd-1") == "stable"   # the history says, not the card

    # The next model is compared with the stable one's card (same snapshot) and becomes the canary.
    assert stable_reference(store, _evaluation(0.3)) == ("svd-1", card.metrics, "its card, same data snapshot")
    second = publish(store, _model(1), ModelCard(version="svdpp-1", algorithm="svdpp"), _evaluation(0.295))
    assert second.decision.candidate and second.decision.stable_version == "svd-1"
    assert release(store, "svdpp-1", deploy="canary", canary_percent=25).deployed == "canary"
    state = rollout.load(store)
    assert (state.stable, state.canary, state.canary_percent) == ("svd-1", "svdpp-1", 25.0)
    assert rollout.deployment_of(state, "svdpp-1") == "canary"
    assert [h["action"] for h in rollout.history_of(state, "svdpp-1")] == ["canary"]
    assert release(store, "svdpp-1", deploy="stable").deployed == "stable"
    assert rollout.load(store).stable == "svdpp-1"


def test_publish_and_release_write_each_file_once(tmp_path, monkeypatch):
    """Deploying after publishing rewrites nothing: a predictor polling in between reads one consistent version."""
    store = LocalStore(tmp_path)
    writes = []
    put = store.put_bytes
    monkeypatch.setattr(store, "put_bytes", lambda key, data: (writes.append(key), put(key, data))[1])
    publish(store, _model(), ModelCard(version="svd-1", algorithm="svd"), _evaluation(0.3))
    release(store, "svd-1", deploy="canary")
    model_writes = [k for k in writes if k.startswith("models/")]
    assert len(model_writes) == len(set(model_writes)) and model_writes[-1].endswith("checksums.json")
    assert rollout.load(store).stable == "svd-1"
    with pytest.raises(ArtifactError, match="written once"):       # publishing it again with a new gate
        publish(store, _model(), ModelCard(version="svd-1", algorithm="svd"), _evaluation(0.31))


def test_rejected_model_is_published_but_not_released(tmp_path):
    store = LocalStore(tmp_path)
    rollout.set_stable(store, "svd-1")
    result = publish(store, _model(), ModelCard(version="svd-2", algorithm="svd"),
                     _evaluation(0.25, stable=("svd-1", 0.30)))
    assert not result.decision.candidate
    assert result.decision.stable_source == "re-evaluated on this split"
    assert list_versions(store) == ["svd-2"]
    assert load_card(store, "svd-2").gate["candidate"] is False
    assert release(store, "svd-2", deploy="canary").deployed is None
    assert rollout.load(store).canary is None

    publish(store, _model(), ModelCard(version="svd-3", algorithm="svd"), _evaluation(0.1))
    forced = release(store, "svd-3", deploy="canary", force=True)
    assert forced.deployed == "canary" and load_card(store, "svd-3").gate["candidate"] is False
    assert "forced past the publish gate" in rollout.load(store).history[-1]["reason"]


def test_a_run_releases_the_winner_or_with_force_the_best_past_its_gate():
    assert to_release("svd-2", "svdpp-1", force=False) == to_release("svd-2", "svdpp-1", force=True) == "svd-2"
    assert to_release("", "svdpp-1", force=False) == ""
    assert to_release("", "svdpp-1", force=True) == "svdpp-1"


def test_bad_deploy_mode_and_model_resolution(tmp_path):
    store = LocalStore(tmp_path / "store")
    publish(store, _model(), ModelCard(version="v", algorithm="svd"), _evaluation(0.3))
    with pytest.raises(ValueError, match="deploy"):
        release(store, "v", deploy="everywhere")
    assert rollout.load(store).stable is None
    _model().save_dir(tmp_path / "folder", ModelCard(version="svd-8", algorithm="svd"))
    assert resolve_model(str(tmp_path / "folder"), store)[1].version == "svd-8"
    _model().save(store, ModelCard(version="svd-7", algorithm="svd"))
    assert resolve_model("svd-7", store)[1].version == "svd-7"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a model version folder"):
        resolve_model(str(tmp_path / "empty"), store)
    with pytest.raises(ArtifactError, match="not published"):
        resolve_model("svd-6", store)


def test_evaluate_and_publish_commands(tmp_path):
    import json

    from typer.testing import CliRunner

    from components.cli import app
    from components.training.preprocess import build_dataset
    from components.training.train import make_recommender
    from tests.synthetic_events import synthetic_events

    rates, watches = synthetic_events(n_users=40, n_movies=30, per_user=12, seed=2)
    data = build_dataset(rates, watches, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1}})
    data.save(tmp_path / "dataset")
    rec = make_recommender("random", {"seed": 1}).fit(data)
    rec.fitted.save_dir(tmp_path / "models" / "random-1", ModelCard(version="random-1", algorithm="random"))
    store = tmp_path / "store"
    runner = CliRunner()

    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "models" / "random-1"),
                                 "--dataset", str(tmp_path / "dataset"), "--store", str(store),
                                 "--report", str(tmp_path / "r.html"), "--output", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "| random-1 |" in result.output and "| popularity |" in result.output
    assert "data:image/png" in (tmp_path / "r.html").read_text()
    assert json.loads((tmp_path / "e.json").read_text())[0]["candidate"]["name"] == "random-1"

    result = runner.invoke(app, ["publish", "--model", str(tmp_path / "models" / "random-1"),
                                 "--dataset", str(tmp_path / "dataset"), "--store", str(store),
                                 "--deploy", "canary", "--force"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["version"] == "random-1" and out["deployed"] == "stable"
    assert load_card(LocalStore(store), "random-1").gate["reasons"]
    assert rollout.load(LocalStore(store)).stable == "random-1"


def test_published_model_masks_what_users_saw_in_the_validation_window_too(tmp_path):
    """Evaluation masks the train period only; the served copy masks the whole snapshot."""
    import numpy as np

    from components.core.model_artifact import FactorModel
    from components.core.store import LocalStore

    model = FactorModel(global_mean=3.0, user_bias=np.zeros(2), item_bias=np.array([0.3, 0.2, 0.1]),
                        user_factors=np.zeros((2, 1)), item_factors=np.zeros((3, 1)), user_ids=[1, 2],
                        movie_ids=["a", "b", "c"], seen_indptr=[0, 0, 0], seen_indices=[], popular=[0, 1, 2])
    import scipy.sparse as sp

    seen = sp.csr_matrix((np.ones(2, dtype=np.int8), ([0, 1], [0, 2])), shape=(2, 3))
    masked = model.with_seen(seen)
    assert masked.recommend(1, 3)[0] == ["b", "c"] and masked.recommend(2, 3)[0] == ["a", "b"]
    assert model.recommend(1, 3)[0] == ["a", "b", "c"]          # the evaluated model is unchanged
    store = LocalStore(tmp_path)
    from components.core.model_artifact import ModelCard

    masked.save(store, ModelCard(version="m-1", algorithm="popularity"))
    assert FactorModel.load(store, "m-1")[0].recommend(1, 3)[0] == ["b", "c"]


def _paired(difference: float, low: float, high: float, users: int = 900, name: str = "popularity") -> dict:
    return {"difference": difference, "low": low, "high": high, "width": high - low, "users": users,
            "level": 0.975, "name": name}


def test_gate_needs_the_lower_bound_above_zero_against_popularity():
    """A higher point estimate is not enough: the interval of the per-user differences decides."""
    noisy = gate({"ndcg@20": 0.25}, {"ndcg@20": 0.24}, comparisons={"popularity": _paired(0.01, -0.02, 0.04)})
    assert not noisy.candidate
    assert "does not beat the popularity baseline" in noisy.reasons[0]
    assert "interval [-0.0200, +0.0400] (width 0.0600) on 900 users: lower bound <= 0" in noisy.reasons[0]
    clear = gate({"ndcg@20": 0.30}, {"ndcg@20": 0.20}, comparisons={"popularity": _paired(0.1, 0.07, 0.13)})
    assert clear.candidate and clear.intervals["popularity"]["users"] == 900


def test_gate_against_stable_uses_the_lower_bound_and_the_margin():
    pop = _paired(0.1, 0.07, 0.13)
    inside = gate({"ndcg@20": 0.29}, {"ndcg@20": 0.2}, {"ndcg@20": 0.30}, margin=0.01, stable_version="v1",
                  stable_source="re-evaluated on this split",
                  comparisons={"popularity": pop, "stable": _paired(-0.01, -0.008, 0.0, name="v1")})
    assert inside.candidate and "lower bound > -0.01" in inside.reasons[1]
    worse = gate({"ndcg@20": 0.30}, {"ndcg@20": 0.2}, {"ndcg@20": 0.30}, margin=0.01, stable_version="v1",
                 comparisons={"popularity": pop, "stable": _paired(0.0, -0.03, 0.03, name="v1")})
    assert not worse.candidate                  # equal point estimates, but -0.03 is within reach
    assert "may be worse than stable v1" in worse.reasons[1] and set(worse.intervals) == {"popularity", "stable"}


def test_stable_model_is_rescored_with_todays_train_mask(tmp_path):
    """The same model scores the same as candidate and as the stored stable model: its stored
    serving mask (validation window included) is replaced by the current split's train mask."""
    from components.training.evaluate import evaluate_with_baseline
    from components.training.preprocess import build_dataset
    from components.training.publish import reference_models
    from components.training.train import make_recommender
    from tests.synthetic_events import synthetic_events

    rates, watches = synthetic_events(n_users=60, n_movies=40, per_user=15, seed=4)
    data = build_dataset(rates, watches, {"preprocess": {"min_user_movies": 1, "min_movie_users": 1}})
    fitted = make_recommender("popularity", {}).fit(data).fitted
    store = LocalStore(tmp_path)
    publish(store, fitted, ModelCard(version="pop-1", algorithm="popularity"),
            evaluate_with_baseline(fitted, data, name="pop-1"), seen=data.serving_seen_csr)
    rollout.set_stable(store, "pop-1")
    refs = reference_models(store, data, "pop-2")
    result = evaluate_with_baseline(fitted, data, name="pop-2", references=refs)
    assert result["references"]["stable"]["metrics"]["ndcg@20"] == result["candidate"]["metrics"]["ndcg@20"] > 0
    stored = evaluate_with_baseline(FactorModel.load(store, "pop-1")[0], data, name="stored")
    assert stored["candidate"]["metrics"]["ndcg@20"] < result["candidate"]["metrics"]["ndcg@20"]  # the old bug
    assert result["comparisons"]["by_role"]["stable"]["width"] == 0.0


def test_a_model_that_passes_is_refit_on_the_whole_snapshot_and_the_refit_is_served(tmp_path):
    from components.core.events import RateEvent, WatchEvent
    from components.training.evaluate import evaluate_with_baseline
    from components.training.preprocess import prepare
    from components.training.publish import refit_whole_snapshot
    from components.training.train import train
    from tests.snapshot_batches import write_batch
    from tests.synthetic_events import synthetic_events

    store = LocalStore(tmp_path / "store")
    rates, watches = synthetic_events(n_users=50, n_movies=30, per_user=14, seed=7)
    events = [(int(o), RateEvent(t.to_pydatetime(), int(u), m, int(v)))
              for t, u, m, v, _, o in rates.itertuples(index=False)]
    events += [(int(o), WatchEvent(t.to_pydatetime(), int(u), m, int(x)))
               for t, u, m, x, _, o in watches.itertuples(index=False)]
    write_batch(store, "syn", 0, 10**6, events, [])
    params = {"preprocess": {"min_user_movies": 1, "min_movie_users": 1},
              "train": {"algorithms": ["svd"], "svd": {"n_factors": 4, "n_epochs": 5}}}
    data = prepare(store, params)
    rec, card = train(data, "svd", params)
    evaluation = evaluate_with_baseline(rec.fitted, data, params, name=card.version)
    evaluation["comparisons"]["by_role"]["popularity"].update(low=0.01)      # let it pass, whatever the noise
    publish(store, rec.fitted, card, evaluation, params, seen=data.serving_seen_csr)
    result = release(store, card.version, params, deploy="canary", refit_with=refit_whole_snapshot(store, params))
    assert result.decision.candidate and result.served != card.version and result.deployed == "stable"
    assert rollout.load(store).stable == result.served and result.version == card.version
    evaluated, refit = load_card(store, card.version), load_card(store, result.served)
    assert refit.gate["refit_of"] == card.version and "refit" not in evaluated.gate     # written once, before
    assert rollout.history_of(rollout.load(store), result.served)[0]["reason"].startswith("publish gate")
    assert "whole snapshot" in refit.gate["reasons"][-1] and "the one the split was cut from" in refit.gate["reasons"][-1]
    assert refit.params == evaluated.params and refit.metrics["ndcg@20"] == evaluated.metrics["ndcg@20"]
    whole = FactorModel.load(store, result.served)[0]
    assert whole.n_users >= rec.fitted.n_users
    assert whole.seen_indptr[-1] == len(rates[["user_id", "movie_id"]].drop_duplicates()
                                        .merge(watches[["user_id", "movie_id"]], how="outer").drop_duplicates())

    # The next candidate on this split meets the stable refit through its evaluated twin: the refit
    # has trained on this validation window.
    from components.training.publish import reference_models
    (name, scored), = reference_models(store, data, "svd-next").values()
    assert name == result.served and np.array_equal(scored.user_factors, rec.fitted.user_factors)
    again = evaluate_with_baseline(rec.fitted, data, params, name="svd-next",
                                   references=reference_models(store, data, "svd-next"))
    assert stable_reference(store, again)[2] == f"re-evaluated on this split through {card.version}, the same " \
                                                "fit without the whole snapshot's last window"
    assert again["comparisons"]["by_role"]["stable"]["width"] == 0.0



def test_a_rejected_model_is_not_refit_even_when_forced(tmp_path):
    calls = []
    store = LocalStore(tmp_path)
    publish(store, _model(), ModelCard(version="svd-9", algorithm="svd"), _evaluation(0.1))
    result = release(store, "svd-9", deploy="stable", force=True,
                     refit_with=lambda card: calls.append(card) or (_model(1), card))
    assert not result.decision.candidate and calls == [] and result.served == "svd-9"
    assert list_versions(store) == ["svd-9"] and rollout.load(store).stable == "svd-9"
