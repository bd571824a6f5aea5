"""The simulated users: hidden tastes, habits, and how they react to movies.

User u's traits depend only on (seed, u): the same user has the same taste whatever the size of
the population or of the history. Taste is low rank: a user bias plus a factor vector that meets
each movie's factors, so the true affinity of user u for movie m is

    affinity(u, m) = user_bias[u] + quality[m] + taste[u] . factors[m]

The behaviour functions turn affinities into what the logs show: which movie a user picks, how
many minutes they watch before giving up, which rating they give, and whether they follow a
recommendation. They are plain functions of an affinity and a random generator so tests can
reason about them.
"""

from __future__ import annotations

import math
import random

import numpy as np

from simulator.catalogue import N_FACTORS, Catalogue

USER_STREAM = 0
USER_BIAS_STD = 0.35
TASTE_STD = 1.0         # std of the personal part taste . factors: what a recommender can learn
INITIAL_SHARE = 0.6     # users who already have an account on the first simulated day
RATER_SHARE = 0.75      # users who ever rate what they watched
RATE_ACTIVITY = 0.35    # engaged users also rate more of what they watch: propensity ~ activity ** this
# How often a user comes back, relative to others (mean 1): Gamma(0.7), a little heavier than an
# exponential (whose p90, p99 and p99.9 over the median, 3.3, 6.6 and 10, are close to MovieLens-100k's
# ratings per user, 3.8, 6.8, 10.5) because counting a few ratings per user in two weeks, and
# keeping only users with one, compresses the tail again (see `movierec fidelity`).
ACTIVITY_SHAPE = 0.7
# Choosing on their own, users pick what they like; how often a movie is picked over all users goes
# as its exposure to a power (see `choice_base`), whatever its quality: exposure says how often,
# taste says by whom. Without that, quality multiplied the exposure's head (top-1% share 0.14).
CHOICE_BETA = 1.8       # how strongly users pick what they like when choosing on their own
EXPOSURE_POWER = 0.8    # how much being well known draws users to a movie
KNOWN_BETA = 0.5        # ... and how much taste shaped the movies they saw before joining
KNOWN_POWER = 0.7       # ... and being well known (older movies were known through other channels)
RATING_CENTER, RATING_SCALE, RATING_NOISE = 2.55, 0.9, 0.6
FINISH_AT = 0.6         # interest above which a movie is watched to the end
DISLIKE_AT = -0.8       # affinity below which a movie is disliked strongly (and rated more often)
RATE_STRONG, RATE_WEAK = 0.9, 0.3  # rate-after-watch chance (times the user's propensity)
FOLLOW_BETA = 1.5       # taste sensitivity when looking at a recommendation list
FOLLOW_SLOPE, FOLLOW_THRESHOLD = 1.4, 3.5
ATTENTION = 3.0         # list positions: the top few get most of a user's attention
SEEN_WEIGHT, STARTED_WEIGHT = 0.02, 0.3  # how much less users pick movies seen / abandoned


# E[activity ** RATE_ACTIVITY] of the Gamma(ACTIVITY_SHAPE, 1 / ACTIVITY_SHAPE) activity
_MEAN_ACTIVITY_POWER = math.gamma(ACTIVITY_SHAPE + RATE_ACTIVITY) / math.gamma(ACTIVITY_SHAPE) / ACTIVITY_SHAPE ** RATE_ACTIVITY


class Population:
    """Users 1..n_users and their hidden traits, as arrays indexed by user id (row 0 unused)."""

    def __init__(self, seed: int, n_users: int):
        if n_users < 1:
            raise ValueError("a population needs at least one user")
        self.seed = seed
        self.n_users = n_users
        rows = [user_traits(seed, u) for u in range(n_users + 1)]
        self.bias = np.array([r[0] for r in rows])
        self.taste = np.array([r[1] for r in rows])
        self.activity = np.array([r[2] for r in rows])
        self.rate_propensity = np.array([r[3] for r in rows])
        self.join_quantile = np.array([r[4] for r in rows])
        self.activity[0] = 0.0  # user id 0 is not a member

    @property
    def user_ids(self) -> range:
        return range(1, self.n_users + 1)

    def affinity(self, catalogue: Catalogue, user_id: int) -> np.ndarray:
        """True affinity of a user for every movie of the catalogue."""
        if 1 <= user_id <= self.n_users:
            bias, taste = self.bias[user_id], self.taste[user_id]
        else:
            bias, taste, *_ = user_traits(self.seed, user_id)
        return bias + catalogue.quality + catalogue.factors @ taste


def user_traits(seed: int, user_id: int) -> tuple[float, np.ndarray, float, float, float]:
    """(bias, taste vector, activity, rate propensity, join quantile) of one user, from (seed, u)."""
    rng = np.random.default_rng([seed, USER_STREAM, user_id])
    bias = rng.normal(0.0, USER_BIAS_STD)
    taste = rng.normal(0.0, TASTE_STD / math.sqrt(N_FACTORS), N_FACTORS)
    activity = rng.gamma(ACTIVITY_SHAPE, 1.0 / ACTIVITY_SHAPE)
    rate = rng.beta(2.0, 2.0) if rng.random() < RATER_SHARE else 0.0
    rate *= (activity ** RATE_ACTIVITY) / _MEAN_ACTIVITY_POWER  # the same mean propensity
    join = rng.random()
    return bias, taste, activity, rate, join


# -- behaviour: from affinity to what the log shows ----------------------------------------------

def choice_base(catalogue: Catalogue, beta: float = CHOICE_BETA, power: float = EXPOSURE_POWER) -> np.ndarray:
    """Log-odds of picking each movie before a user's affinity: `power` log exposure, minus the log of
    exp(beta * affinity) averaged over the users (beta * quality + beta^2 * the variance of the
    taste part / 2). A user's odds are exp(base + beta * affinity): over all users a movie's share of
    picks goes as exposure ** power, and a user picks the movies they like more than others do."""
    spread = TASTE_STD ** 2 / N_FACTORS * (catalogue.factors ** 2).sum(axis=1)
    return power * np.log(catalogue.exposure) - beta * catalogue.quality - beta ** 2 * spread / 2


def choice_weights(affinity: np.ndarray, base: np.ndarray, seen_weight: dict[int, float],
                   beta: float = CHOICE_BETA) -> np.ndarray:
    """Unnormalised odds that a user picks each movie on their own: known, liked, not yet seen
    (`base` from `choice_base` with the same beta)."""
    w = np.exp(base + beta * (affinity - affinity.max()))
    for m, factor in seen_weight.items():
        w[m] *= factor
    return w


def pick(weights: np.ndarray, rnd: random.Random) -> int:
    """Draw an index with probability proportional to `weights`."""
    cum = np.cumsum(weights)
    return int(min(np.searchsorted(cum, rnd.random() * cum[-1], side="right"), len(cum) - 1))


def minutes_watched(affinity: float, length: int, rnd: random.Random) -> int:
    """How many minutes a user streams before stopping: liked movies to the end, others earlier."""
    interest = affinity + rnd.gauss(0.0, 0.6)
    if interest >= FINISH_AT:
        return length
    fraction = math.exp(-1.5 * (FINISH_AT - interest)) * (0.1 + 0.9 * rnd.random())
    return max(1, min(length, int(length * fraction)))


def rate_probability(propensity: float, affinity: float, minutes: int, length: int) -> float:
    """Chance that a user rates what they just watched: raters rate finished movies and movies they
    disliked strongly more often than ones they drifted away from."""
    finished = minutes >= 0.9 * length
    strong = finished or affinity <= DISLIKE_AT
    return propensity * (RATE_STRONG if strong else RATE_WEAK)


def rating(affinity: float, rnd: random.Random) -> int:
    """A 1-5 star rating: a noisy, rounded function of the true affinity."""
    value = RATING_CENTER + RATING_SCALE * affinity + rnd.gauss(0.0, RATING_NOISE)
    return int(min(5, max(1, round(value))))


def follow_odds(utilities: np.ndarray) -> np.ndarray:
    """Attention-weighted appeal of each position of a recommendation list (best first)."""
    positions = np.arange(len(utilities))
    return np.exp(FOLLOW_BETA * utilities - positions / ATTENTION)


def follow_probability(utilities: np.ndarray) -> float:
    """Chance that a user watches something from a list: grows with their taste for what is shown."""
    if len(utilities) == 0:
        return 0.0
    appeal = math.log(float(follow_odds(utilities).sum()))
    return 1.0 / (1.0 + math.exp(-FOLLOW_SLOPE * (appeal - FOLLOW_THRESHOLD)))
