"""Canary worlds fitted to the calibrated simulator: measure what `WorldSpec` models, derive a spec.

    service = StreamingService(seed, n_users=20_000, n_movies=1000)   # a profile's size and traffic
    measured = measure_service(service, Profile.scaled(...))           # its history, then live traffic
    spec = spec_from_measures(measured)                                 # the WorldSpec of those users

What is measured, and from where:

* Visits: every history session is a visit to the home page (on the platform, the predictor
  serves each one). Per user and `days`-long window, the number of sessions of users with at least
  one; fitted as a zero-truncated Poisson-Gamma (negative binomial): mean and Gamma shape.
* Reloads: history requests of a user closer than `RELOAD_GAP_S` to the previous one are reloads
  of the same visit; their mean per visit.
* Mid-session visits: the share of history requests made while the user's previous session was
  still streaming.
* Following, own choice: live traffic on a simulated clock, the service's popularity list as the
  recommender. Per request, whether the user followed the list (the service's own counter), else
  watched an own choice, and whether that own choice is a listed movie. Per user, requests and
  follows, fitted as a beta-binomial: mean and concentration.
* Concentration: the Zipf exponent of the world's lists and own choices is the one whose own
  choices land on a list as often as the simulator's do (the attribution bias of the data).

Nothing of the simulator's behaviour is copied here: only its log and its traffic counters are read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from components.core.events import RecommendationEvent, WatchEvent, parse_line
from simulator.worlds import WorldSpec

RELOAD_GAP_S = 600      # a request within 10 minutes of the user's previous one reloads the same visit


@dataclass
class Measured:
    """What the simulated service's users did, in the quantities a `WorldSpec` models."""

    days: float                  # window length the visit counts are per
    visits: np.ndarray           # sessions per (user, window) with at least one
    requests: int                # history requests
    reloads: int                 # ... of them reloads of a visit
    mid_session: int             # ... of them made while the user's session was streaming
    live_answered: int           # live requests answered with a list
    followed: int                # ... followed by a watch of a listed movie
    own_choice: int              # ... not followed, but an own choice was watched
    own_on_list: int             # ... an own choice that is a listed movie
    user_requests: np.ndarray    # per live user: answered requests
    user_follows: np.ndarray     # ... and how many of them they followed
    list_length: int
    movies: int

    def summary(self) -> dict:
        v = self.visits
        visits = int(self.requests - self.reloads)
        return {"visits_per_user_mean": float(v.mean()),
                "visits_per_user_p50_p90_p99_max": [float(np.percentile(v, q)) for q in (50, 90, 99)]
                + [int(v.max())],
                "reloads_per_visit": self.reloads / visits if visits else 0.0,
                "mid_session_share": self.mid_session / self.requests if self.requests else 0.0,
                "follow_rate": self.followed / self.live_answered if self.live_answered else 0.0,
                "own_choice_when_not_followed": self.own_choice / max(1, self.live_answered - self.followed),
                "own_choice_on_list": self.own_on_list / self.own_choice if self.own_choice else 0.0}


def measure_service(service, days: int, sessions_per_day: int, window_days: float = 2.0,
                    live_requests: int = 20_000, list_length: int = 20, start: datetime | None = None) -> Measured:
    """Play `days` of the service's history, then `live_requests` live requests answered by its
    popularity list; measure both (the service is changed: users remember what they watched)."""
    start = start or datetime(2026, 3, 2)
    rec_t, rec_u, ses_t, ses_u, ses_end = [], [], [], [], []
    last_start: dict[tuple[int, str], int] = {}
    for line in service.history(days=days, sessions_per_day=sessions_per_day, start=start):
        event = parse_line(line)
        if isinstance(event, RecommendationEvent):
            rec_t.append(event.time.timestamp())
            rec_u.append(event.user_id)
        elif isinstance(event, WatchEvent):
            t = event.time.timestamp()
            if event.minute == 0:
                last_start[(event.user_id, event.movie_id)] = len(ses_t)
                ses_t.append(t)
                ses_u.append(event.user_id)
                ses_end.append(t + 60)
            elif (event.user_id, event.movie_id) in last_start:
                i = last_start[(event.user_id, event.movie_id)]
                ses_end[i] = max(ses_end[i], t + 60)
    rec_t, rec_u = np.array(rec_t), np.array(rec_u, dtype=np.int64)
    ses_t, ses_u, ses_end = np.array(ses_t), np.array(ses_u, dtype=np.int64), np.array(ses_end)

    # visits per user and window
    window = np.floor((ses_t - start.timestamp()) / (window_days * 86400)).astype(np.int64)
    _, counts = np.unique(np.stack([ses_u, window]), axis=1, return_counts=True)
    # reloads: a request soon after the same user's previous one
    order = np.lexsort((rec_t, rec_u))
    same = np.diff(rec_u[order]) == 0
    reload = same & (np.diff(rec_t[order]) <= RELOAD_GAP_S)
    # mid-session: the user's latest session that started before the request still streams
    mid = 0
    if len(ses_t) and len(rec_t):
        s_order = np.lexsort((ses_t, ses_u))
        keys_s = ses_u[s_order].astype(float) * 1e11 + ses_t[s_order]
        pos = np.searchsorted(keys_s, rec_u.astype(float) * 1e11 + rec_t, side="left") - 1
        ok = pos >= 0
        prev = s_order[np.maximum(pos, 0)]
        mid = int((ok & (ses_u[prev] == rec_u) & (ses_end[prev] > rec_t)).sum())

    live = _live(service, live_requests, list_length, start + timedelta(days=days))
    return Measured(days=window_days, visits=counts, requests=int(rec_t.size), reloads=int(reload.sum()),
                    mid_session=mid, list_length=list_length, movies=len(service.catalogue), **live)


def _live(service, n: int, list_length: int, start: datetime) -> dict:
    """Live requests answered by the popularity list: per request, followed / own choice / on the list."""
    recommend = service.popularity_recommender(list_length)
    lists: dict[int, tuple[int, set]] = {}        # request number -> (user, listed movies)
    user_req: dict[int, int] = {}
    user_fol: dict[int, int] = {}
    counted = [0, 0]                               # (followed, own choice) when the previous request was settled
    own_on_list = [0]

    def settle() -> None:
        traffic = service.traffic
        if traffic.requests and traffic.requests in lists:
            user, _ = lists[traffic.requests]
            user_fol[user] = user_fol.get(user, 0) + traffic.followed - counted[0]
            counted[:] = [traffic.followed, traffic.own_choice]

    def call(user_id: int):
        settle()
        answer = recommend(user_id)
        lists[service.traffic.requests + 1] = (int(user_id), set(answer.ids))
        user_req[int(user_id)] = user_req.get(int(user_id), 0) + 1
        return answer

    own_seen = [0]
    for line in service.serve_traffic(call, n_requests=n, concurrency=1, start=start):
        event = parse_line(line)
        traffic = service.traffic
        if isinstance(event, WatchEvent) and event.minute == 0 and traffic.own_choice > own_seen[0]:
            own_seen[0] = traffic.own_choice           # the first session line of this request's own choice
            own_on_list[0] += event.movie_id in lists[traffic.requests][1]
    settle()
    users = sorted(user_req)
    traffic = service.traffic
    return {"live_answered": traffic.answered, "followed": traffic.followed, "own_choice": traffic.own_choice,
            "own_on_list": own_on_list[0], "user_requests": np.array([user_req[u] for u in users]),
            "user_follows": np.array([user_fol.get(u, 0) for u in users])}


def spec_from_measures(m: Measured, base: WorldSpec = WorldSpec()) -> WorldSpec:
    """The `WorldSpec` whose users behave as measured (size, share and failures kept from `base`)."""
    visits_mean, visits_shape = fit_truncated_negbin(m.visits)
    visits = m.requests - m.reloads
    follow_mean, follow_concentration = fit_beta_binomial(m.user_requests, m.user_follows)
    not_followed = max(1, m.live_answered - m.followed)
    on_list = m.own_on_list / m.own_choice if m.own_choice else 0.0
    spec = replace(base, days=m.days, list_length=m.list_length, visits_mean=round(visits_mean, 4),
                   visits_shape=round(visits_shape, 3), follow_mean=round(follow_mean, 4),
                   follow_concentration=round(follow_concentration, 3),
                   reload_mean=round(m.reloads / visits if visits else 0.0, 4),
                   own_choice=round(m.own_choice / not_followed, 4),
                   mid_session_visit=round(m.mid_session / m.requests if m.requests else 0.0, 4))
    return replace(spec, zipf=round(zipf_for_list_share(on_list, spec), 3))


def fit_truncated_negbin(counts: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (mean, Gamma shape) of a Poisson-Gamma count observed only when >= 1."""
    from scipy.optimize import minimize
    from scipy.special import gammaln

    x = np.asarray(counts, dtype=float)

    def nll(params: np.ndarray) -> float:
        mu, k = np.exp(params)
        log_p = (gammaln(x + k) - gammaln(k) - gammaln(x + 1) + k * np.log(k / (k + mu))
                 + x * np.log(mu / (k + mu)))
        p0 = (k / (k + mu)) ** k
        return float(-(log_p - np.log1p(-p0)).sum())

    fit = minimize(nll, np.log([max(x.mean() - 1, 0.1), 1.0]), method="Nelder-Mead",
                   options={"xatol": 1e-6, "fatol": 1e-6, "maxiter": 2000})
    mu, k = np.exp(fit.x)
    return float(mu), float(k)


def fit_beta_binomial(n: np.ndarray, k: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (mean, a + b) of per-user follow chances from requests n and follows k."""
    from scipy.optimize import minimize
    from scipy.stats import betabinom

    n, k = np.asarray(n), np.asarray(k)
    p = max(min(k.sum() / n.sum(), 0.99), 0.01)

    def nll(params: np.ndarray) -> float:
        mean, conc = 1 / (1 + np.exp(-params[0])), np.exp(params[1])
        return float(-betabinom.logpmf(k, n, mean * conc, (1 - mean) * conc).sum())

    fit = minimize(nll, [np.log(p / (1 - p)), np.log(2.0)], method="Nelder-Mead",
                   options={"xatol": 1e-6, "fatol": 1e-6, "maxiter": 2000})
    return float(1 / (1 + np.exp(-fit.x[0]))), float(np.exp(fit.x[1]))


def zipf_for_list_share(share: float, spec: WorldSpec, rows: int = 4000, seed: int = 0) -> float:
    """The Zipf exponent at which an own choice of the world lands on the user's list with chance
    `share` (bisection on `worlds.own_choice_on_list`, monotone in the exponent)."""
    from simulator.worlds import own_choice_on_list

    lo, hi = 0.0, 3.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if own_choice_on_list(replace(spec, zipf=mid), rows, seed) < share:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
