"""Named worlds: the size and traffic of a simulated service, so that a course-scale world is one flag.

    movierec simulate --profile course --to file:events.log     # 200k users, 10k movies, 14 days
    movierec simulate --profile demo                            # the default: small and fast

A flag given next to `--profile` overrides that one setting. Traffic is given per user and day,
so a profile scaled to fewer users (`Profile.scaled`, used by the tests) keeps its shape: the same
sessions per user, the same heavy tail of activity, the same share of ratings after watching.
The figures each profile produces are in `simulator/README.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    """The size and traffic of a world; the users' behaviour is the same in every profile."""

    name: str
    users: int
    movies: int
    days: int
    sessions_per_user_day: float  # watch sessions started per member and day, on average
    signup_ratings: float         # mean number of movies a newcomer rates when joining
    legacy_share: float           # sessions that start from the service's popularity list

    @property
    def sessions_per_day(self) -> int:
        return max(1, round(self.users * self.sessions_per_user_day))

    def scaled(self, users: int, movies: int | None = None) -> Profile:
        """The same world with fewer (or more) users and movies: traffic per user is kept."""
        return replace(self, name=f"{self.name}@{users}", users=users, movies=movies or self.movies)


PROFILES = {
    # The demo's and the tests' default: 1500 users, ratings enough for a model to learn in 21 days.
    "demo": Profile("demo", users=1500, movies=400, days=21, sessions_per_user_day=110 / 1500, signup_ratings=25,
                    legacy_share=0.15),
    # The course's service: 200k users, 10k movies, two weeks, a log dominated by watch minutes.
    "course": Profile("course", users=200_000, movies=10_000, days=14, sessions_per_user_day=0.15,
                      signup_ratings=0.4, legacy_share=0.05),
}
DEFAULT_PROFILE = "demo"


def get_profile(name: str) -> Profile:
    """The profile called `name`; ValueError naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}: choose from {', '.join(PROFILES)}") from None
