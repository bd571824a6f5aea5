"""The event-log contract: one line per event, four kinds, everything else rejected with a reason.

This module is the only place that knows the line format. Ingest, the simulator, the predictor's
request log and online evaluation all parse and format through it.

    watch           <time>,<userid>,GET /data/m/<movieid>/<minute>.mpg
    rate            <time>,<userid>,GET /rate/<movieid>=<rating>
    recommendation  <time>,<userid>,recommendation request <server>, status <code>, result: <ids>, <ms> ms
    account         <time>,<userid>,GET /create_account

Parsing never raises on bad input: a corrupted line becomes a `Rejection` carrying the line and a
short machine-readable reason (used as a metric label) plus a human-readable detail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Union

MAX_RESULTS = 20
ANSWER_BUDGET_MS = 600  # a recommendation answered later than this counts as failed (the contract)
# The longest line the contract holds (20 long slugs make a few KB): longer lines are rejected as
# `too_long`, and their dead letter keeps the first `KEPT_CHARS` characters only.
MAX_LINE_CHARS = 16 * 1024
KEPT_CHARS = 1024
# Events stamped later than the reader's clock plus this are rejected as `future_time` (a client's
# clock far off, or a forged line): one such event must not become "now" for online evaluation.
# Generous on purpose: a service may log a whole viewing session when it starts (the simulator
# does: a film's minutes are stamped up to about 3 hours ahead); what it stops is a date days or
# years away, which would move evaluation's clock and the snapshot days for good.
MAX_CLOCK_SKEW = timedelta(hours=12)
MAX_USER_ID = 2**63 - 1
RATING_RANGE = (1, 5)
UNKNOWN_VERSION = "unknown"  # the model version of a recommendation line whose server names none

# A movie id is a slug: lowercase title words joined by '+', optionally '+<year>'. It never holds
# the separators of the line format (',', ' ', '/', '=') nor control characters.
SLUG_PATTERN = r"[a-z0-9][a-z0-9+\-'.:&!?()%$#@*;_]*"
SLUG_RE = re.compile(rf"^{SLUG_PATTERN}\Z")
_YEAR_RE = re.compile(r"\+(\d{4})$")

# Real course logs stamp events to the second, the millisecond (`.149`) or the microsecond, depending
# on the offering: all three are the contract, anything else (other fractions, zones) is not.
TIME_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3}(?:\d{3})?)?"
_TIME_RE = re.compile(rf"^{TIME_PATTERN}\Z", re.ASCII)
_USER_RE = re.compile(r"^(?:[1-9]\d{0,18}|0)\Z", re.ASCII)  # \Z: "1\n" is not a user id
_WATCH_RE = re.compile(rf"^GET /data/m/({SLUG_PATTERN})/(\d{{1,5}})\.mpg$", re.ASCII)
# re.ASCII: only 0-9 are digits of the contract ('١٢' is not user 12); the rating is bounded
# because int() refuses strings of 4300+ digits with an exception.
_RATE_RE = re.compile(rf"^GET /rate/({SLUG_PATTERN})=(-?\d{{1,9}})$", re.ASCII)
_RECO_RE = re.compile(r"^recommendation request (\S+), status (\d{1,3}), result: (.*), (\d{1,9}) ms$", re.ASCII)

# Reason codes of a rejection. They are metric labels: keep the set small and stable.
REASONS = (
    "empty",
    "truncated",
    "bad_time",
    "bad_user",
    "bad_request",
    "bad_movie",
    "bad_minute",
    "bad_rating",
    "bad_status",
    "bad_result",
    "bad_response_time",
    "too_long",
    "future_time",
)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One minute of a movie streamed by a user."""

    time: datetime
    user_id: int
    movie_id: str
    minute: int
    kind = "watch"


@dataclass(frozen=True, slots=True)
class RateEvent:
    """A user's explicit 1-5 rating of a movie."""

    time: datetime
    user_id: int
    movie_id: str
    rating: int
    kind = "rate"


@dataclass(frozen=True, slots=True)
class RecommendationEvent:
    """A served (or failed) recommendation request, as the service logged it.

    `server` names who answered; the platform's predictor writes `<host>@<model version>` there, so
    that online evaluation can attribute every answer to the version that produced it. For a
    status other than 200 the result text is kept verbatim in `error` and `results` is empty.
    """

    time: datetime
    user_id: int
    server: str
    status: int
    results: tuple[str, ...]
    response_time_ms: int
    error: str = ""
    kind = "recommendation"

    @property
    def version(self) -> str:
        """The model version recorded in `server` (`<host>@<version>`), or UNKNOWN_VERSION."""
        return server_version(self.server)


def server_version(server: str) -> str:
    """The model version in a recommendation line's `<host>@<version>`; UNKNOWN_VERSION when the
    server names none (no '@', or nothing after it). The one parser of that field."""
    _, sep, version = server.rpartition("@")
    return version if sep and version else UNKNOWN_VERSION


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """A user created an account."""

    time: datetime
    user_id: int
    kind = "account"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line that is not a valid event: the raw line, why, and a human-readable detail."""

    line: str
    reason: str
    detail: str = ""
    kind = "rejection"


Event = Union[WatchEvent, RateEvent, RecommendationEvent, AccountEvent]
EVENT_KINDS = ("watch", "rate", "recommendation", "account")


@dataclass(frozen=True, slots=True)
class MovieSlug:
    """A movie id split into its title words and (optional) release year."""

    slug: str
    title: str
    year: int | None = field(default=None)


def parse_slug(slug: str) -> MovieSlug:
    """Split `the+matrix+1999` into title 'the matrix' and year 1999; raise ValueError if invalid."""
    if not SLUG_RE.match(slug):
        raise ValueError(f"not a movie slug: {slug!r}")
    m = _YEAR_RE.search(slug)
    if m and len(slug) > 5:
        return MovieSlug(slug, slug[: m.start()].replace("+", " "), int(m.group(1)))
    return MovieSlug(slug, slug.replace("+", " "), None)


def make_slug(title: str, year: int | None = None) -> str:
    """Build a movie slug from a title and year: ('The Matrix', 1999) -> 'the+matrix+1999'."""
    words = re.sub(r"[^a-z0-9'&!?.:\- ]", " ", title.lower()).split()
    slug = re.sub(r"^[^a-z0-9]+", "", "+".join(words)) or "untitled"  # a slug starts with [a-z0-9]
    return f"{slug}+{year}" if year is not None else slug


def format_time(t: datetime) -> str:
    """ISO-8601 without zone: to the second, or with microseconds when there are any."""
    return t.isoformat(timespec="microseconds" if t.microsecond else "seconds")


def parse_time(text: str) -> datetime:
    """Parse the contract's timestamp; raise ValueError on anything else (zones, other precisions)."""
    if not _TIME_RE.match(text):
        raise ValueError(f"not an ISO-8601 timestamp to the second, millisecond or microsecond: {text!r}")
    return datetime.fromisoformat(text)


def parse_user_id(text: str) -> int:
    """A user id as the contract writes it (decimal, no sign, no leading zeros, 0..2^63-1);
    ValueError saying why otherwise. The predictor's `/recommend/<userid>` uses the same rule."""
    if not _USER_RE.match(text):
        raise ValueError(f"user id must be a decimal integer without sign or leading zeros, got {text[:40]!r}")
    value = int(text)
    if value > MAX_USER_ID:
        raise ValueError(f"user id {text} out of range 0..{MAX_USER_ID}")
    return value


def format_event(event: Event) -> str:
    """The log line of an event (no trailing newline). `parse_line(format_event(e)) == e`."""
    if not isinstance(event, (WatchEvent, RateEvent, RecommendationEvent, AccountEvent)):
        raise TypeError(f"not an event: {event!r}")
    head = f"{format_time(event.time)},{event.user_id},"
    if isinstance(event, WatchEvent):
        return f"{head}GET /data/m/{event.movie_id}/{event.minute}.mpg"
    if isinstance(event, RateEvent):
        return f"{head}GET /rate/{event.movie_id}={event.rating}"
    if isinstance(event, RecommendationEvent):
        result = ", ".join(event.results) if event.status == 200 else event.error
        return (
            f"{head}recommendation request {event.server}, status {event.status}, "
            f"result: {result}, {event.response_time_ms} ms"
        )
    if isinstance(event, AccountEvent):
        return f"{head}GET /create_account"
    raise TypeError(f"not an event: {event!r}")


def parse_line(line: str | bytes) -> Event | Rejection:
    """Parse one log line into a typed event, or a `Rejection` saying why it is not one.

    Never raises: every input, however mangled, gives an event or a rejection.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
            return too_long(text) if len(text) > MAX_LINE_CHARS else Rejection(text, "bad_request", "not valid UTF-8")
    line = line.rstrip("\r\n")
    if len(line) > MAX_LINE_CHARS:
        return too_long(line)
    if not line.strip():
        return Rejection(line, "empty", "empty line")
    parts = line.split(",", 2)
    if len(parts) < 3:
        return Rejection(line, "truncated", f"expected 3 comma-separated fields, got {len(parts)}")
    time_text, user_text, request = parts
    if not _TIME_RE.match(time_text):
        return Rejection(line, "bad_time", f"bad timestamp {time_text[:40]!r}")
    try:
        time = datetime.fromisoformat(time_text)
    except ValueError as exc:
        return Rejection(line, "bad_time", str(exc))
    try:
        user_id = parse_user_id(user_text)
    except ValueError:
        return Rejection(line, "bad_user", f"bad user id {user_text[:40]!r}")

    if request.startswith("GET /data/m/"):
        m = _WATCH_RE.match(request)
        if not m:
            return _reject_request(line, request, "watch")
        return WatchEvent(time, user_id, m.group(1), int(m.group(2)))
    if request.startswith("GET /rate/"):
        m = _RATE_RE.match(request)
        if not m:
            return _reject_request(line, request, "rate")
        rating = int(m.group(2))
        if not RATING_RANGE[0] <= rating <= RATING_RANGE[1]:
            return Rejection(line, "bad_rating", f"rating {rating} outside 1-5")
        return RateEvent(time, user_id, m.group(1), rating)
    if request.startswith("recommendation request "):
        return parse_recommendation(line, time, user_id, request)
    if request == "GET /create_account":
        return AccountEvent(time, user_id)
    return Rejection(line, "bad_request", f"unknown request {request[:60]!r}")


def too_long(line: str) -> Rejection:
    """The rejection of a line longer than the contract allows: its head is kept, with its length."""
    return Rejection(line[:KEPT_CHARS], "too_long", f"{len(line)} characters, at most {MAX_LINE_CHARS}")


def future_time(line: str, time: datetime, now: datetime) -> Rejection:
    """The rejection of an event stamped past the reader's clock (`now`) plus `MAX_CLOCK_SKEW`."""
    return Rejection(line, "future_time", f"stamped {format_time(time)}, later than the reader's clock "
                     f"{format_time(now.replace(microsecond=0))} + {MAX_CLOCK_SKEW}")


def latest_acceptable(now: datetime) -> datetime:
    """The latest event time a reader whose clock says `now` (UTC, no zone) accepts."""
    return now + MAX_CLOCK_SKEW


def _reject_request(line: str, request: str, kind: str) -> Rejection:
    """Say which part of a watch or rate request is broken."""
    if kind == "watch":
        rest = request[len("GET /data/m/"):]
        movie, _, tail = rest.partition("/")
        if not SLUG_RE.match(movie):
            return Rejection(line, "bad_movie", f"bad movie id {movie[:60]!r}")
        return Rejection(line, "bad_minute", f"bad minute segment {tail[:40]!r}")
    rest = request[len("GET /rate/"):]
    movie, sep, rating = rest.partition("=")
    if not SLUG_RE.match(movie):
        return Rejection(line, "bad_movie", f"bad movie id {movie[:60]!r}")
    if not sep:
        return Rejection(line, "truncated", "rating missing")
    return Rejection(line, "bad_rating", f"bad rating {rating[:20]!r}")


def parse_recommendation(line: str, time: datetime, user_id: int, request: str) -> Event | Rejection:
    """The recommendation-request part of a line whose time and user are already parsed."""
    m = _RECO_RE.match(request)
    if not m:
        if " ms" not in request[-4:]:
            return Rejection(line, "truncated", "recommendation line does not end with '<n> ms'")
        return Rejection(line, "bad_result", "recommendation line does not match the contract")
    server, status_text, result, ms_text = m.groups()
    status = int(status_text)
    if status != 0 and not 100 <= status <= 599:
        return Rejection(line, "bad_status", f"status {status} is not an HTTP status or 0")
    if status != 200:
        return RecommendationEvent(time, user_id, server, status, (), int(ms_text), error=result)
    ids = tuple(result.split(", ")) if result else ()
    if len(ids) > MAX_RESULTS:
        return Rejection(line, "bad_result", f"{len(ids)} results, at most {MAX_RESULTS} allowed")
    for movie in ids:
        if not SLUG_RE.match(movie):
            return Rejection(line, "bad_result", f"bad movie id in result {movie[:60]!r}")
    return RecommendationEvent(time, user_id, server, status, ids, int(ms_text))
