"""Publish: put a trained model version into the store, gated, and optionally deploy it.

Every trained model is published (its card says how it did), but only a *candidate* may be
deployed. The gate is on the primary metric (`evaluate.primary_metric`, NDCG@20), user by user:
the evaluate step scores the candidate, the popularity baseline and the stable model on the
same validation users, and for each user the difference (candidate - other). The gate reads
the mean difference and its paired bootstrap interval (`evaluate.gate_confidence`, made
simultaneous over the algorithms trained on the same split, so that keeping the best of them
does not flatter it):

1. against the popularity baseline, the interval's lower bound must be above 0;
2. against the current stable model, the lower bound must be above `-evaluate.gate_margin`.
   The stable model is re-scored on the same split with its factors and today's train-period
   mask (`reference_models`), never with the serving mask it was stored with: that mask holds
   the validation window, today's targets, and would hide them from its lists. A stable model
   that is a refit on a whole snapshot is scored through its evaluated twin (`scored_as`), whose
   training stopped at an earlier cutoff: the refit has trained on today's targets. When it cannot
   be loaded, its card's point estimate is used (possibly from an older split), and the
   reason says so.

Without per-user figures (an evaluation set written before the comparisons existed) the gate
falls back to point estimates and says so.
The decision and its reasons go into the card (`ModelCard.gate`) together with the offline
metrics, so the trace and the reports can show why a version exists (`publish`). The version is
written once, before any deployment. `release` then takes the one version chosen among those
published (the pipeline's `compare` winner), refits it on the whole snapshot when it passed, and
deploys it: `deploy="canary"` starts a canary (or makes it stable if nothing is deployed yet) and
`deploy="stable"` replaces the stable version. Both are recorded with their reason in the rollout
history (`movierec rollout status`), never in the card. A rejected model is never deployed unless
`force=True`, which the history records too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from components.core import rollout
from components.core.model_artifact import ArtifactError, FactorModel, ModelCard, load_card
from components.core.params import section
from components.core.store import ArtifactStore
from components.training.dataset import Dataset

DEPLOY_MODES = ("none", "canary", "stable")
log = logging.getLogger(__name__)


@dataclass
class GateDecision:
    """Whether a model may be deployed, and why."""

    candidate: bool
    reasons: list[str]
    primary_metric: str
    value: float | None
    baseline: float | None
    margin: float
    stable_version: str | None = None
    stable_value: float | None = None
    stable_source: str = ""
    intervals: dict[str, Any] = field(default_factory=dict)   # by role: difference, low, high, width, users

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PublishResult:
    version: str
    decision: GateDecision
    deployed: str | None = None          # "stable" | "canary" | None
    served: str = ""                     # the version deployed: the refit when there is one
    rollout: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "candidate": self.decision.candidate, "deployed": self.deployed,
                "served": self.served,
                "gate": self.decision.to_dict(), "rollout": self.rollout}


def gate(metrics: dict[str, float], baseline: dict[str, float], stable: dict[str, float] | None = None, *,
         primary: str = "ndcg@20", margin: float = 0.01, stable_version: str | None = None,
         stable_source: str = "", comparisons: dict[str, dict] | None = None) -> GateDecision:
    """The publish gate on the primary metric (pure: no store, no side effects). `comparisons`:
    the paired intervals by role ("popularity", "stable") of `evaluate.paired_comparisons`."""
    value, base = metrics.get(primary), baseline.get(primary)
    comparisons = comparisons or {}
    decision = GateDecision(candidate=True, reasons=[], primary_metric=primary, value=value, baseline=base,
                            margin=margin, stable_version=stable_version, stable_source=stable_source)
    if value is None:
        decision.candidate = False
        decision.reasons.append(f"no {primary} in the evaluation (no validation user with a relevant movie?): "
                                "cannot gate")
        return decision
    pop = comparisons.get("popularity")
    if pop and pop.get("users"):
        decision.intervals["popularity"] = pop
        ok = pop["low"] > 0
        decision.candidate &= ok
        decision.reasons.append(("beats" if ok else "does not beat") + " the popularity baseline: "
                                + _paired(pop, value, base, "> 0" if ok else "<= 0"))
    elif base is None:
        decision.candidate = False
        decision.reasons.append(f"no popularity baseline {primary}: cannot gate")
    elif value > base:
        decision.reasons.append(f"beats the popularity baseline: {primary} {value:.4f} > {base:.4f} "
                                "(point estimates, no per-user comparison)")
    else:
        decision.candidate = False
        decision.reasons.append(f"does not beat the popularity baseline: {primary} {value:.4f} <= {base:.4f} "
                                "(point estimates, no per-user comparison)")
    if stable_version is None:
        decision.reasons.append("no stable version deployed: nothing else to compare with")
        return decision
    stable_value = (stable or {}).get(primary)
    where = f" ({stable_source})" if stable_source else ""
    decision.stable_value = stable_value
    paired = comparisons.get("stable")
    if paired and paired.get("users") and paired.get("name") == stable_version:
        decision.intervals["stable"] = paired
        ok = paired["low"] > -margin
        decision.candidate &= ok
        decision.reasons.append(("no worse than" if ok else "may be worse than")
                                + f" stable {stable_version}{where} beyond the margin {margin}: "
                                + _paired(paired, value, stable_value, f"> -{margin}" if ok else f"<= -{margin}"))
    elif stable_value is None:
        decision.reasons.append(f"stable {stable_version} has no {primary}: comparison skipped")
    elif value >= stable_value:
        decision.reasons.append(f"at least as good as stable {stable_version}{where}: "
                                f"{value:.4f} vs {stable_value:.4f} (point estimates)")
    elif value >= stable_value - margin:
        decision.reasons.append(f"within {margin} of stable {stable_version}{where}: "
                                f"{value:.4f} vs {stable_value:.4f} (point estimates)")
    else:
        decision.candidate = False
        decision.reasons.append(f"trails stable {stable_version}{where} by "
                                f"{stable_value - value:.4f} > margin {margin}: {value:.4f} vs {stable_value:.4f} "
                                "(point estimates)")
    return decision


def _paired(c: dict, value: float, other: float | None, verdict: str) -> str:
    other_text = f"{other:.4f}" if other is not None else "-"
    return (f"{value:.4f} vs {other_text}, per-user difference {c['difference']:+.4f}, "
            f"{c['level']:.1%} interval [{c['low']:+.4f}, {c['high']:+.4f}] (width {c['width']:.4f}) "
            f"on {c['users']} users: lower bound {verdict}")


def decide(store: ArtifactStore, evaluation: dict[str, Any], params: dict | None = None,
           version: str | None = None) -> GateDecision:
    """The gate decision of one evaluation set against what the store deploys now (what publish
    records; the evaluate step shows it in its report)."""
    p = section(params, "evaluate")
    primary = evaluation.get("primary_metric", p["primary_metric"])
    stable, stable_metrics, source = stable_reference(store, evaluation)
    if stable is not None and stable == version:
        stable, stable_metrics, source = None, {}, ""          # re-publishing the stable version itself
    return gate(dict(evaluation["candidate"]["metrics"]), evaluation["baseline"]["metrics"], stable_metrics,
                primary=primary, margin=float(p["gate_margin"]), stable_version=stable, stable_source=source,
                comparisons=evaluation.get("comparisons", {}).get("by_role"))


def reference_models(store: ArtifactStore, dataset: Dataset, candidate: str | None = None
                     ) -> dict[str, tuple[str, FactorModel]]:
    """The deployed stable model to re-evaluate beside a candidate on the same split, as the
    `references` of `evaluate_with_baseline`: {"stable": (version, model)}, its factors masking
    what its users had seen before `dataset`'s cutoff (`Dataset.train_seen_for`), as the
    candidate does. Empty when nothing is stable, the candidate is the stable version itself, or
    its artifact cannot be loaded (the gate then falls back to its card, see `stable_reference`)."""
    stable = rollout.load(store).stable
    if not stable or stable == candidate:
        return {}
    try:
        model = FactorModel.load(store, scored_as(store, stable))[0]
    except ArtifactError as exc:
        log.warning("stable %s not re-evaluated (%s); its card is used", stable, exc)
        return {}
    return {"stable": (stable, model.with_seen(dataset.train_seen_for(model.user_ids, model.movie_ids)))}


def scored_as(store: ArtifactStore, stable: str) -> str:
    """The version whose factors stand for `stable` offline: its evaluated twin when `stable` is a
    refit on a whole snapshot (the refit has trained on what is now the validation window: it
    would be judged on its own training data), else `stable` itself."""
    try:
        return load_card(store, stable).gate.get("refit_of") or stable
    except (KeyError, ArtifactError):
        return stable


def stable_reference(store: ArtifactStore, evaluation: dict[str, Any]) -> tuple[str | None, dict, str]:
    """(stable version, its metrics, where they come from) for the gate."""
    stable = rollout.load(store).stable
    if stable is None:
        return None, {}, ""
    ref = evaluation.get("references", {}).get("stable")
    if ref and ref.get("name") == stable:
        twin = scored_as(store, stable)
        return stable, dict(ref["metrics"]), "re-evaluated on this split" + (
            f" through {twin}, the same fit without the whole snapshot's last window" if twin != stable else "")
    try:
        card = load_card(store, stable)
    except KeyError:
        return stable, {}, "its card is missing"
    same = card.data_snapshot and card.data_snapshot == evaluation.get("snapshot")
    return stable, dict(card.metrics), "its card, same data snapshot" if same else "its card, an older split"


def publish(store: ArtifactStore, model: FactorModel, card: ModelCard, evaluation: dict[str, Any],
            params: dict | None = None, *, pipeline_run: str = "", seen=None) -> PublishResult:
    """Gate `model` on its evaluation set (from `components.training.evaluate.evaluate_with_baseline`) and
    write it to the store as `card.version`, with its metrics and the decision in its card. Nothing
    is deployed: that is `release`, for the one model chosen among those published.

    `seen` (a users x movies CSR, `Dataset.serving_seen_csr`) replaces the train-period mask the
    model was evaluated with, so the served model never recommends what its users watched in the
    validation window either."""
    if seen is not None:
        model = model.with_seen(seen)
    metrics = dict(evaluation["candidate"]["metrics"])
    decision = decide(store, evaluation, params, card.version)
    card.metrics = {**card.metrics, **metrics,
                    **{f"baseline_{k}": v for k, v in evaluation["baseline"]["metrics"].items()}}
    card.metrics.update({f"{group}_{k}": v for group, values in evaluation["candidate"].get("by_activity", {}).items()
                         for k, v in values.items()})
    if pipeline_run:
        card.pipeline_run = pipeline_run
    card.gate = decision.to_dict()
    model.save(store, card)                      # published once (checksums last)
    return PublishResult(version=card.version, decision=decision, served=card.version,
                         rollout=rollout.load(store).to_dict())


def to_release(winner: str, best: str, force: bool) -> str:
    """The version a pipeline run releases: the compare winner (the best model that passed the
    gate); without one, the best model on the primary metric when `force`, else none ("")."""
    return winner or (best if force else "")


def release(store: ArtifactStore, version: str, params: dict | None = None, *, deploy: str = "none",
            canary_percent: float | None = None, force: bool = False, pipeline_run: str = "",
            refit_with: Callable[[ModelCard], tuple[FactorModel, ModelCard]] | None = None) -> PublishResult:
    """Release a published `version` (the one `compare` chose): refit it, publish the refit, deploy.

    `refit_with` (e.g. `refit_whole_snapshot` bound to the store and params): when the version
    passed its gate, it is refit with the same hyper-parameters on the whole snapshot and the refit
    is published as a version of its own, which is what is deployed. The refit's card names what
    was evaluated (`gate.refit_of`) and carries its offline metrics and decision; the evaluated
    card, written once before the choice was made, is left as it is.

    `deploy`: "none" deploys nothing; "canary" starts a canary of the released version, or makes it
    stable when nothing is deployed yet; "stable" makes it stable. A version its gate rejected is
    neither refit nor deployed unless `force`, which the rollout history records."""
    if deploy not in DEPLOY_MODES:
        raise ValueError(f"deploy must be one of {', '.join(DEPLOY_MODES)}, got {deploy!r}")
    card = load_card(store, version)
    decision = GateDecision(**{k: v for k, v in card.gate.items() if k in GateDecision.__dataclass_fields__})
    served = version
    if refit_with is not None and decision.candidate:
        refit_model, refit_card = refit_with(card)
        refit_card.metrics = {**refit_card.metrics, **{k: v for k, v in card.metrics.items() if k != "train_rmse"}}
        refit_card.gate = {**decision.to_dict(), "refit_of": card.version,
                           "reasons": [*decision.reasons, f"refit of {card.version} (which these figures are of) "
                                       f"with the same hyper-parameters on the whole snapshot "
                                       f"{refit_card.data_snapshot[:12]}"
                                       + (" (the one the split was cut from)" if refit_card.data_snapshot
                                          == card.data_snapshot else " (newer than the split's)")
                                       + "; the refit is what is served"]}
        if pipeline_run:
            refit_card.pipeline_run = pipeline_run
        served = refit_model.save(store, refit_card)
    deployed = None
    if deploy != "none" and (decision.candidate or force):
        percent = canary_percent if canary_percent is not None else float(section(params, "evaluate")["canary_percent"])
        deployed = _deploy(store, served, deploy, percent, decision)
    return PublishResult(version=version, decision=decision, deployed=deployed, served=served,
                         rollout=rollout.load(store).to_dict())


def refit_whole_snapshot(store: ArtifactStore, params: dict | None = None
                         ) -> Callable[[ModelCard], tuple[FactorModel, ModelCard]]:
    """The `refit_with` of `publish`: the evaluated model's algorithm and hyper-parameters (its
    card) fit on every event of the store's snapshot (no validation window), masking everything
    its users have seen. Its version names it a refit of the evaluated one."""
    from components.core.params import complete
    from components.training.preprocess import prepare
    from components.training.train import code_commit, model_version, train

    def refit(card: ModelCard) -> tuple[FactorModel, ModelCard]:
        whole = complete(params)
        whole["preprocess"].update(valid_days=None, valid_fraction=0.0)
        whole["train"][card.algorithm] = dict(card.params)
        whole["train"]["tune"] = {**whole["train"]["tune"], "mode": "fixed"}   # the evaluated model's values, not a new search
        data = prepare(store, whole)
        rec, refit_card = train(data, card.algorithm, whole)
        refit_card.version = model_version(card.algorithm, datetime.now(UTC), data.snapshot_hash,
                                           {**card.params, "refit_of": card.version}, code_commit())
        return rec.fitted.with_seen(data.seen_csr), refit_card

    return refit


def _deploy(store: ArtifactStore, version: str, mode: str, percent: float, decision: GateDecision) -> str | None:
    state = rollout.load(store)
    reason = ("publish gate: " if decision.candidate else "forced past the publish gate: ") + "; ".join(decision.reasons)
    if mode == "stable" or state.stable is None:
        rollout.set_stable(store, version, reason=reason)
        return "stable"
    if state.stable == version:
        return "stable"
    rollout.start_canary(store, version, percent, reason=reason)
    return "canary"



def resolve_model(spec: str, store: ArtifactStore) -> tuple[FactorModel, ModelCard]:
    """A model from what a person types: a version folder (from `movierec train`, a DVC output, a
    Kubeflow artifact) or a version published in `store`. Checksums are verified in both cases."""
    from pathlib import Path

    from components.core import layout

    path = Path(spec)
    if path.is_dir():
        if not (path / layout.CHECKSUMS).is_file():
            raise ArtifactError(f"{spec}: not a model version folder (no {layout.CHECKSUMS}); give a folder written "
                                "by `movierec train` or a published version")
        return FactorModel.load_dir(path)
    return FactorModel.load(store, spec)
