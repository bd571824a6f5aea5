"""The simulated service's catalogue: movies with generated titles, lengths and hidden traits.

Every movie's traits depend only on (seed, movie index), so a catalogue of 400 movies is the first
400 movies of a catalogue of 600 with the same seed. Each movie has a public face (slug, title,
year, length) and hidden traits the users react to: a quality bias, a latent factor vector and an
exposure weight ("popularity") that follows a long tail (its shape fitted to MovieLens-100k),
partly correlated with quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from components.core.events import make_slug

N_FACTORS = 8          # rank of the hidden taste model
QUALITY_STD = 0.5      # spread of movie quality biases
# How much better movies are also better known: the correlation of a movie's exposure draw with its
# quality (MovieLens-100k: 0.52 between a movie's log number of ratings and its mean rating).
EXPOSURE_QUALITY = 0.5
NO_YEAR_SHARE = 0.03   # some slugs carry no year, as in real logs
MOVIE_STREAM = 1       # rng stream id of movie traits (users use 0)

_ADJECTIVES = (
    "silent last dark lost broken golden hidden wild crimson frozen endless secret burning "
    "electric quiet fallen hollow iron midnight paper restless savage shining stolen twisted "
    "velvet wandering bitter distant forgotten glass lonely northern scarlet sudden tender "
    "violent wicked young brave cold final grand little lucky strange sweet"
).split()
_NOUNS = (
    "river city night storm garden kingdom shadow empire mirror harbor frontier machine "
    "summer winter heart ocean mountain road station island forest tower memory promise "
    "letter dream signal orbit desert voyage legacy witness hunter stranger soldier dancer "
    "thief queen king doctor detective pilot ghost circus carnival planet horizon echo"
).split()
_NAMES = (
    "anna max lucia omar elena victor rosa felix nora hugo iris leo maya oscar ruth sam "
    "tessa walter yara zoe"
).split()
_PLACES = "paris tokyo berlin cairo lagos lima oslo rome seoul tangier vienna".split()


def _title(rng: np.random.Generator) -> str:
    """A plausible movie title from a few patterns."""
    def pick(words):
        return words[int(rng.integers(len(words)))]

    pattern = int(rng.integers(7))
    if pattern == 0:
        return f"The {pick(_ADJECTIVES)} {pick(_NOUNS)}"
    if pattern == 1:
        return f"{pick(_NOUNS)} of the {pick(_NOUNS)}"
    if pattern == 2:
        return f"{pick(_NAMES)}'s {pick(_NOUNS)}"
    if pattern == 3:
        return f"{pick(_ADJECTIVES)} {pick(_NOUNS)}s"
    if pattern == 4:
        return f"Return to {pick(_PLACES)}"
    if pattern == 5:
        return f"The {pick(_NOUNS)} and the {pick(_NOUNS)}"
    return f"{pick(_NAMES)} in {pick(_PLACES)}"


@dataclass(frozen=True, slots=True)
class Movie:
    """A movie's public face: what the logs show of it."""

    index: int
    slug: str
    title: str
    year: int | None
    length_min: int


class Catalogue:
    """The movies of the service, with their hidden traits as arrays indexed like `movies`."""

    def __init__(self, seed: int, n_movies: int):
        if n_movies < 1:
            raise ValueError("a catalogue needs at least one movie")
        self.seed = seed
        movies: list[Movie] = []
        self.quality = np.empty(n_movies)
        self.factors = np.empty((n_movies, N_FACTORS))
        exposure_z = np.empty(n_movies)
        slugs: set[str] = set()
        for m in range(n_movies):
            rng = np.random.default_rng([seed, MOVIE_STREAM, m])
            self.quality[m] = rng.normal(0.0, QUALITY_STD)
            self.factors[m] = rng.normal(0.0, 1.0, N_FACTORS)
            exposure_z[m] = rng.normal()
            title = _title(rng).title().replace("'S ", "'s ")
            year = int(2025 - min(75, rng.exponential(15.0)))
            length = int(np.clip(round(rng.normal(108, 22)), 60, 180))
            no_year = rng.random() < NO_YEAR_SHARE
            slug = make_slug(title, None if no_year else year)
            while slug in slugs:  # titles repeat; remakes get the next free year
                year += 1
                no_year = False
                slug = make_slug(title, year)
            slugs.add(slug)
            movies.append(Movie(m, slug, title, None if no_year else year, length))
        self.movies = movies
        self.slugs = [movie.slug for movie in movies]
        self.lengths = np.array([movie.length_min for movie in movies], dtype=np.int64)
        self.index = {slug: m for m, slug in enumerate(self.slugs)}
        # Gamma(1/2) exposure (h^2 / 2 of a half-normal h): its Gini (0.64) and top-1% share (0.085)
        # are MovieLens-100k's (0.63, 0.08); a log-normal with that Gini has twice the head share.
        # Drawn through a Gaussian copula, so that it keeps exactly that shape while correlating
        # with quality: a quality multiplier on top would fatten the head again.
        x = EXPOSURE_QUALITY * self.quality / QUALITY_STD + np.sqrt(1 - EXPOSURE_QUALITY ** 2) * exposure_z
        exposure = np.maximum(ndtri(0.5 + 0.5 * ndtr(x)) ** 2 / 2, np.finfo(float).tiny)
        self.exposure = exposure / exposure.max()
        # Best known first: what a popularity list (the service's legacy recommender) shows.
        self.popularity_order = np.argsort(-self.exposure, kind="stable")

    def __len__(self) -> int:
        return len(self.movies)

    def indices(self, movie_ids) -> np.ndarray:
        """Indices of slugs (or indices passed through); -1 for slugs not in the catalogue."""
        return np.array([m if isinstance(m, (int, np.integer)) else self.index.get(m, -1)
                         for m in movie_ids], dtype=np.int64)
