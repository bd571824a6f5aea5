"""The fidelity report: its statistics, and a small course-shaped world within tolerance of ml-100k.

ml-100k may not be shipped, so the small world is checked against MovieLens-100k's figures as the
report measured them (`movierec fidelity`, the `real` block of its JSON); the report itself reads
the data at run time. The plumbing (MovieLens file in, JSON and PNG out, exit codes) runs on a
MovieLens-format file written by the test.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from movierec.cli import app
from movierec.fidelity import (
    RATIO_TOLERANCE,
    Sample,
    compare,
    from_lines,
    from_ratings,
    gini,
    statistics,
    top_share,
)
from movierec.fidelity_report import simulated_sample

# MovieLens-100k as `movierec fidelity` measures it (ratings per user over the median, head, mean).
ML100K = {"p90/median": 244.4 / 65, "p99/median": 442.54 / 65, "max/median": 685.06 / 65,
          "top1pct_movie_share": 0.07634, "gini_movie_ratings": 0.6290, "mean_rating": 3.52986, "users": 943}


def test_gini_and_head_share_of_known_shapes():
    assert gini(np.ones(100)) == pytest.approx(0.0)
    assert gini(np.r_[np.zeros(99), 1.0]) == pytest.approx(0.99)
    assert top_share(np.r_[np.ones(99), 101.0]) == pytest.approx(0.505)
    rng = np.random.default_rng(0)
    assert gini(rng.exponential(size=200_000)) == pytest.approx(0.5, abs=0.01)  # exponential: exactly 1/2


def test_session_lengths_come_from_the_minute_lines():
    lines = [f"2026-03-01T10:{m:02d}:00,7,GET /data/m/a+movie+2001/{m}.mpg" for m in range(3)]
    lines += [f"2026-03-01T11:{m:02d}:00,8,GET /data/m/a+movie+2001/{m}.mpg" for m in range(5)]
    lines += ["2026-03-01T12:00:00,8,GET /rate/a+movie+2001=4", "garbage,,", "2026-03-01T12:00:00,9,GET /rate/x=9"]
    sample = from_lines(lines)
    assert sorted(sample.session_minutes.tolist()) == [3, 5]
    assert sample.watch_users == {"7", "8"}
    assert sample.rates[["user_id", "movie_id", "rating"]].values.tolist() == [[8, "a+movie+2001", 4]]


def test_the_uniform_world_is_out_of_tolerance():
    """Everyone with about the same number of ratings, all on a few movies: the report must say so."""
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(1, 2001), 22)
    uniform = pd.DataFrame({"user_id": users, "movie_id": rng.zipf(1.6, users.size) % 500,
                            "rating": rng.integers(3, 6, users.size), "time": np.arange(users.size)})
    counts = (20 + rng.exponential(70, 900)).astype(int)           # a heavy tail, MovieLens-like
    popularity = rng.gamma(0.5, size=1600)
    n = counts.sum()
    heavy = pd.DataFrame({"user_id": np.repeat(np.arange(1, 901), counts),
                          "movie_id": rng.choice(1600, n, p=popularity / popularity.sum()),
                          "rating": rng.integers(1, 6, n), "timestamp": np.arange(n)})
    rows = {r.statistic: r for r in compare(statistics(Sample(uniform), 943), statistics(from_ratings(heavy)))}
    assert rows["ratings per user p90 / median"].passed is False
    assert rows["share of ratings on the top 1% of movies"].passed is False
    assert rows["KS ratings per user (/ median)"].passed is False


@pytest.fixture(scope="module")
def small_course_world():
    sample, service = simulated_sample("course", seed=0, users=20_000, movies=1_000)
    return sample, service, statistics(sample, reference_users=ML100K["users"])["scalars"]


def test_a_small_course_world_is_within_tolerance_of_ml100k(small_course_world):
    """The course profile at a tenth of its users and movies (the same users per movie and traffic per
    user): the per-user tail, the catalogue's head (here the top 1% are 10 movies) and Gini, the mean."""
    _, _, s = small_course_world
    simulated = {"p90/median": s["ratings_per_user_p90"] / s["ratings_per_user_median"],
                 "p99/median": s["ratings_per_user_p99"] / s["ratings_per_user_median"],
                 "max/median": s["ratings_per_user_max_size_matched"] / s["ratings_per_user_median"],
                 "top1pct_movie_share": s["top1pct_movie_share"],
                 "gini_movie_ratings": s["gini_movie_ratings"],
                 "mean_rating": s["mean_rating"]}
    off = {k: round(v / ML100K[k] - 1, 3) for k, v in simulated.items() if abs(v / ML100K[k] - 1) > RATIO_TOLERANCE}
    assert not off, f"out of {RATIO_TOLERANCE:.0%} of ml-100k: {off}"


def test_a_course_world_is_dominated_by_watching(small_course_world):
    sample, service, s = small_course_world
    assert service.counts["watch"] > 50 * service.counts["rate"]     # the log is watch minutes
    assert service.ratings_after_watch > 0.5 * service.counts["rate"]  # ratings mostly follow a watch
    assert s["users_who_watched"] > 0.5 * service.population.n_users


def test_fidelity_command_writes_table_and_plot(tmp_path):
    rng = np.random.default_rng(2)
    n = 20_000
    real = tmp_path / "u.data"  # MovieLens-100k's layout: user, item, rating, timestamp (tab-separated)
    pd.DataFrame({"u": np.minimum(rng.exponential(60, n).astype(int) + 1, 900), "i": rng.integers(1, 400, n),
                  "r": rng.integers(1, 6, n), "t": 880_000_000 + np.arange(n)}).to_csv(real, sep="\t", header=False,
                                                                                     index=False)
    result = CliRunner().invoke(app, ["fidelity", "--profile", "demo", "--users", "300", "--movies", "80",
                                      "--real", str(real), "--output", str(tmp_path / "out")])
    assert result.exit_code in (0, 1), result.output
    report = json.loads((tmp_path / "out" / "fidelity.json").read_text())
    assert (result.exit_code == 0) == report["passed"]
    assert [row["statistic"] for row in report["table"]][:3] == [
        "ratings per user p90 / median", "ratings per user p99 / median",
        "ratings per user max / median (size-matched)"]
    assert report["real"]["ratings"] == n and (tmp_path / "out" / "fidelity.png").stat().st_size > 20_000
    assert "ratings per user p90 / median" in result.output


def test_fidelity_mistakes_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["fidelity", "--log", str(tmp_path / "missing.log")])
    assert result.exit_code != 0 and "no such event log" in str(result.exception or result.output)
    result = runner.invoke(app, ["fidelity", "--profile", "huge", "--real", str(tmp_path / "u.data")])
    assert result.exit_code == 2 and "--profile" in result.output
