"""Worlds fitted to the simulator: the fits recover known parameters, the derivation reads a real
(small) simulated service, and the calibrated spec is what `movierec calibrate` uses by default."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from simulator.profiles import get_profile
from simulator.service import StreamingService
from simulator.world_fit import (
    fit_beta_binomial,
    fit_truncated_negbin,
    measure_service,
    spec_from_measures,
    zipf_for_list_share,
)
from simulator.worlds import COURSE_WORLD, WORLDS, WorldSpec, make_world, own_choice_on_list


def test_truncated_negbin_fit_recovers_mean_and_shape_of_visitors_only():
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.6 * rng.gamma(0.7, 1 / 0.7, 200_000))
    mu, k = fit_truncated_negbin(counts[counts > 0])           # users who never visit are not seen
    assert mu == pytest.approx(0.6, rel=0.1) and k == pytest.approx(0.7, rel=0.15)


def test_beta_binomial_fit_recovers_mean_and_concentration():
    rng = np.random.default_rng(2)
    n = rng.integers(1, 8, 20_000)
    k = rng.binomial(n, rng.beta(0.4 * 5, 0.6 * 5, n.size))
    mean, conc = fit_beta_binomial(n, k)
    assert mean == pytest.approx(0.4, abs=0.01) and conc == pytest.approx(5.0, rel=0.2)


def test_zipf_exponent_matches_the_share_of_own_choices_on_the_list():
    spec = WorldSpec(movies=300, list_length=20)
    assert own_choice_on_list(replace(spec, zipf=1.2)) > own_choice_on_list(replace(spec, zipf=0.4))
    z = zipf_for_list_share(0.2, spec, rows=2000)
    assert own_choice_on_list(replace(spec, zipf=z), rows=2000) == pytest.approx(0.2, abs=0.01)


def test_truncated_visits_of_a_world_have_at_least_one_and_the_fitted_mean():
    spec = replace(WorldSpec(users=20_000, days=1.0), visits_mean=0.5, visits_shape=0.7)
    recs = make_world(1, replace(spec, reload_mean=0.0, mid_session_visit=0.0))["recommendation"]
    visits = recs.groupby("user_id").size().to_numpy()
    assert visits.min() >= 1
    mu, k = fit_truncated_negbin(visits)
    assert mu == pytest.approx(0.5, rel=0.15) and k == pytest.approx(0.7, rel=0.3)


def test_legacy_worlds_are_unchanged_by_the_new_fields():
    """`--world legacy` is the first worlds exactly: the new fields default to the old behaviour."""
    assert WorldSpec.legacy() == WorldSpec() and WORLDS["legacy"]() == WorldSpec()
    recs = make_world(3, WorldSpec(users=600, days=1.0))["recommendation"]
    assert len(recs) == 2998 and recs["user_id"].iloc[0] == 3000289   # as before the new fields


def test_spec_derived_from_a_small_simulated_service():
    """The derivation reads a real service's log and counters: its users visit with a heavy tail,
    reload, never open the home page mid-movie (the simulator's users are busy while watching),
    follow popularity lists, and own choices land on the list less often than they are made."""
    profile = get_profile("course").scaled(1500, 300)
    service = StreamingService(seed=5, n_users=profile.users, n_movies=profile.movies,
                               signup_ratings=profile.signup_ratings, legacy_share=profile.legacy_share)
    m = measure_service(service, profile.days, profile.sessions_per_day, live_requests=3000)
    spec = spec_from_measures(m)
    assert m.visits.min() >= 1 and m.visits.max() >= 4 * np.median(m.visits)
    assert 0.1 < spec.reload_mean < 0.6                 # the service reloads with chance 0.25 each time
    assert spec.mid_session_visit == 0.0
    assert 0.05 < spec.follow_mean < 0.9 and spec.follow_concentration > 0
    assert 0.3 < spec.own_choice < 0.7                  # users who ignore a list watch their own half the time
    assert 0 < m.own_on_list < m.own_choice
    assert spec.visits_shape > 0 and spec.list_length == 20 and spec.users == WorldSpec().users
    assert m.live_answered == 3000 and m.user_requests.sum() == 3000 and m.user_follows.sum() == m.followed


def test_course_world_is_the_calibrate_default_and_legacy_one_flag_away(monkeypatch):
    import movierec.calibration as cal
    from movierec.cli import app

    seen = []
    monkeypatch.setattr(cal, "calibrate", lambda worlds, scenarios, spec, **kw: seen.append(spec) or
                        {"passed": True, "scenarios": {}})
    for args in ([], ["--world", "legacy"]):
        assert CliRunner().invoke(app, ["calibrate", "--worlds", "1", *args]).exit_code == 0
    assert seen[0] == replace(COURSE_WORLD, users=10_000) and seen[1] == WorldSpec()
    assert COURSE_WORLD.visits_shape > 0 and COURSE_WORLD != WorldSpec()
    result = CliRunner().invoke(app, ["calibrate", "--world", "mars", "--worlds", "1"])
    assert result.exit_code == 2 and "unknown world 'mars'" in result.output and "Traceback" not in result.output


def test_the_canary_analysis_reads_course_worlds_as_it_reads_the_first_ones():
    """On fitted worlds the vectorised looks of the calibration agree with `canary.analyse`."""
    from movierec import calibration

    outcomes = [calibration.run_world(seed, 0.0, COURSE_WORLD) for seed in (1, 2)]
    assert all(o.analyse_agrees for o in outcomes) and all(o.looks > 50 for o in outcomes)


def test_course_world_is_the_spec_the_last_world_fit_derived():
    """`COURSE_WORLD` is what `bench_world_fit` last derived from the simulator: a change to the
    simulator's behaviour re-runs the fit, and this test keeps the constant from drifting from it."""
    import json
    from pathlib import Path

    fit = json.loads((Path(__file__).resolve().parents[3] / "benchmarks/results/world-fit.json").read_text())
    behaviour = ("visits_mean", "visits_shape", "follow_mean", "follow_concentration", "reload_mean",
                 "own_choice", "mid_session_visit", "zipf", "list_length")
    assert {k: getattr(COURSE_WORLD, k) for k in behaviour} == {k: fit["derived_spec"][k] for k in behaviour}
