"""The event-line contract: every kind round-trips, every corrupted line is rejected with its reason."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from components.core.events import (
    EVENT_KINDS,
    KEPT_CHARS,
    MAX_LINE_CHARS,
    MAX_RESULTS,
    MAX_USER_ID,
    REASONS,
    SLUG_RE,
    UNKNOWN_VERSION,
    AccountEvent,
    RateEvent,
    RecommendationEvent,
    Rejection,
    WatchEvent,
    format_event,
    make_slug,
    parse_line,
    parse_slug,
    parse_time,
    server_version,
)

T = "2026-03-18T06:12:47"
T_US = "2026-03-18T06:12:47.123456"
IDS = [f"movie+{i}+{1990 + i}" for i in range(MAX_RESULTS)]

VALID_LINES = {
    "watch": f"{T},42,GET /data/m/the+matrix+1999/17.mpg",
    "watch, microseconds, slug without year": f"{T_US},42,GET /data/m/amelie/0.mpg",
    "rate": f"{T},7,GET /rate/the+matrix+1999=4",
    "rate, microseconds": f"{T_US},7,GET /rate/heat=1",
    "recommendation": f"{T},3,recommendation request host-1@v2, status 200, result: {', '.join(IDS)}, 87 ms",
    "recommendation, one result": f"{T},3,recommendation request 10.0.0.1:8080, status 200, result: heat+1995, 5 ms",
    "recommendation, empty result": f"{T},3,recommendation request h, status 200, result: , 5 ms",
    "recommendation timeout": f"{T},3,recommendation request h@v1, status 0, result: , 600 ms",
    "recommendation timeout with text": f"{T},3,recommendation request h@v1, status 0, result: timeout, 612 ms",
    "recommendation server error": f"{T},3,recommendation request h, status 503, result: unavailable, 2 ms",
    "account": f"{T},123456789,GET /create_account",
    "account, user 0": f"{T_US},0,GET /create_account",
    "account, largest user id": f"{T},{MAX_USER_ID},GET /create_account",
}


@pytest.mark.parametrize("line", VALID_LINES.values(), ids=VALID_LINES.keys())
def test_valid_line_round_trips(line):
    event = parse_line(line)
    assert not isinstance(event, Rejection), event
    assert event.kind in EVENT_KINDS
    assert format_event(event) == line
    assert parse_line(line.encode()) == event
    assert parse_line(line + "\n") == event and parse_line(line + "\r\n") == event


def test_fields_of_each_kind():
    watch = parse_line(VALID_LINES["watch"])
    assert watch == WatchEvent(datetime(2026, 3, 18, 6, 12, 47), 42, "the+matrix+1999", 17)
    assert watch.kind == "watch"
    assert parse_line(VALID_LINES["rate"]) == RateEvent(datetime(2026, 3, 18, 6, 12, 47), 7, "the+matrix+1999", 4)
    assert parse_line(VALID_LINES["account"]).kind == "account"
    reco = parse_line(VALID_LINES["recommendation"])
    assert isinstance(reco, RecommendationEvent)
    assert reco.results == tuple(IDS) and len(reco.results) == MAX_RESULTS
    assert (reco.server, reco.version, reco.status, reco.response_time_ms) == ("host-1@v2", "v2", 200, 87)


def test_microsecond_timestamps_keep_their_precision():
    event = parse_line(VALID_LINES["rate, microseconds"])
    assert event.time == datetime(2026, 3, 18, 6, 12, 47, 123456)
    assert format_event(event).startswith(T_US + ",")
    assert parse_time(T) == datetime(2026, 3, 18, 6, 12, 47)
    with pytest.raises(ValueError):
        parse_time(T + "Z")


def test_status_0_is_a_timeout_with_no_results():
    event = parse_line(VALID_LINES["recommendation timeout with text"])
    assert event.status == 0 and event.results == () and event.error == "timeout"
    assert event.response_time_ms == 612
    assert parse_line(VALID_LINES["recommendation timeout"]).error == ""


def test_version_is_unknown_without_one():
    assert parse_line(VALID_LINES["recommendation, one result"]).version == UNKNOWN_VERSION == "unknown"
    assert server_version("host-1@v2") == "v2" and server_version("a@b@v3") == "v3"
    assert server_version("host-1@") == server_version("host-1") == UNKNOWN_VERSION


def test_slugs_with_and_without_year():
    assert parse_slug("the+matrix+1999") == parse_slug("the+matrix+1999")
    m = parse_slug("the+matrix+1999")
    assert (m.title, m.year) == ("the matrix", 1999)
    m = parse_slug("amelie")
    assert (m.title, m.year) == ("amelie", None)
    assert parse_slug("blade+runner+2049+2017").title == "blade runner 2049"
    assert parse_slug("1917").year is None  # a title that is only a number has no year
    assert parse_slug("x+99").year is None
    assert make_slug("The Matrix", 1999) == "the+matrix+1999"
    assert make_slug("  Heat  ") == "heat"
    assert make_slug("") == "untitled"
    for title in ("Amélie!", "Se7en", "Ocean's Eleven", "What/If, Maybe=No"):
        assert SLUG_RE.match(make_slug(title, 2001)), title
    for bad in ("", "The Matrix", "a/b", "a,b", "a=b", "+a", "a\n"):
        with pytest.raises(ValueError):
            parse_slug(bad)


def test_at_most_twenty_results():
    line = f"{T},3,recommendation request h, status 200, result: {', '.join(IDS + ['one+more'])}, 87 ms"
    rejected = parse_line(line)
    assert isinstance(rejected, Rejection) and rejected.reason == "bad_result"


R = "recommendation request h, status"
# Real course logs: some offerings stamp milliseconds, some microseconds, some whole seconds.
PRECISIONS = {
    "2020-10-23T14:32:43": datetime(2020, 10, 23, 14, 32, 43),
    "2020-10-23T14:32:43.149": datetime(2020, 10, 23, 14, 32, 43, 149000),
    "2020-10-23T14:32:43.000": datetime(2020, 10, 23, 14, 32, 43),
    "2020-10-23T14:32:43.149012": datetime(2020, 10, 23, 14, 32, 43, 149012),
}


@pytest.mark.parametrize("stamp", PRECISIONS)
def test_every_precision_of_real_logs_is_accepted(stamp):
    assert parse_time(stamp) == PRECISIONS[stamp]
    for request in ("GET /data/m/heat+1995/3.mpg", "GET /rate/heat=4", "GET /create_account",
                    "recommendation request h@v1, status 200, result: heat, amelie, 75 ms",
                    "recommendation request h@v1, status 0, result: timeout, 600 ms"):
        event = parse_line(f"{stamp},12,{request}")
        assert not isinstance(event, Rejection), event
        assert event.time == PRECISIONS[stamp]
        assert parse_line(format_event(event)) == event


CORRUPTED = [
    ("", "empty"),
    ("   ", "empty"),
    ("\n", "empty"),
    ("garbage", "truncated"),
    (f"{T},42", "truncated"),
    (f"{T}", "truncated"),
    ("2026-13-18T06:12:47,1,GET /create_account", "bad_time"),
    ("2026-02-30T06:12:47,1,GET /create_account", "bad_time"),
    ("2026-03-18 06:12:47,1,GET /create_account", "bad_time"),
    ("2026-03-18T06:12:47.12,1,GET /create_account", "bad_time"),
    ("2026-03-18T06:12:47.1234,1,GET /create_account", "bad_time"),
    ("2026-03-18T06:12:47.1234567,1,GET /create_account", "bad_time"),
    ("2026-03-18T06:12:47.,1,GET /create_account", "bad_time"),
    ("2026-03-18T06:12:47.149Z,1,GET /create_account", "bad_time"),
    ("2026-03-18T06:12:47Z,1,GET /create_account", "bad_time"),
    ("2026-03-18T06:12:47+00:00,1,GET /create_account", "bad_time"),
    ("18/03/2026,1,GET /create_account", "bad_time"),
    (f"{T}\n,1,GET /create_account", "bad_time"),
    (f"{T},abc,GET /create_account", "bad_user"),
    (f"{T},-1,GET /create_account", "bad_user"),
    (f"{T},007,GET /create_account", "bad_user"),
    (f"{T},,GET /create_account", "bad_user"),
    (f"{T},{MAX_USER_ID + 1},GET /create_account", "bad_user"),
    (f"{T},1\n,GET /create_account", "bad_user"),
    (f"{T},١٢,GET /create_account", "bad_user"),
    (f"{T},1,GET /create_account/x", "bad_request"),
    (f"{T},1,POST /rate/heat=4", "bad_request"),
    (f"{T},1,", "bad_request"),
    (f"{T},1,GET /data/m/The Matrix/5.mpg", "bad_movie"),
    (f"{T},1,GET /data/m//5.mpg", "bad_movie"),
    (f"{T},1,GET /data/m/the+matrix/x.mpg", "bad_minute"),
    (f"{T},1,GET /data/m/the+matrix/5", "bad_minute"),
    (f"{T},1,GET /data/m/the+matrix/123456.mpg", "bad_minute"),
    (f"{T},1,GET /data/m/the+matrix/١.mpg", "bad_minute"),
    (f"{T},1,GET /rate/heat=6", "bad_rating"),
    (f"{T},1,GET /rate/heat=0", "bad_rating"),
    (f"{T},1,GET /rate/heat=-3", "bad_rating"),
    (f"{T},1,GET /rate/heat=four", "bad_rating"),
    (f"{T},1,GET /rate/heat=" + "9" * 5000, "bad_rating"),
    (f"{T},1,GET /rate/heat", "truncated"),
    (f"{T},1,GET /rate/Heat 1995=4", "bad_movie"),
    (f"{T},1,{R} 999, result: heat, 5 ms", "bad_status"),
    (f"{T},1,{R} 42, result: heat, 5 ms", "bad_status"),
    (f"{T},1,{R} 200, result: heat, the matrix, 5 ms", "bad_result"),
    (f"{T},1,{R} 200, result: heat,the+matrix, 5 ms", "bad_result"),
    (f"{T},1,{R} 200, result: heat, 5", "truncated"),
    (f"{T},1,{R} 200, result: heat, the+mat", "truncated"),
    (f"{T},1,{R} 200, result: heat", "truncated"),
]


@pytest.mark.parametrize(("line", "reason"), CORRUPTED, ids=[f"{i}-{r}" for i, (_, r) in enumerate(CORRUPTED)])
def test_corrupted_line_is_rejected_with_reason(line, reason):
    rejected = parse_line(line)
    assert isinstance(rejected, Rejection), rejected
    assert rejected.reason == reason, rejected
    assert rejected.reason in REASONS
    assert rejected.line == line.rstrip("\r\n")
    assert rejected.kind == "rejection"


def test_an_over_long_line_is_rejected_with_its_head_only():
    line = f"{T},1,GET /data/m/{'a' * MAX_LINE_CHARS}/1.mpg"
    for raw in (line, line.encode(), line.encode() + b"\xff"):
        rejected = parse_line(raw)
        assert rejected.reason == "too_long" and rejected.line == line[:KEPT_CHARS]
        assert str(len(line) + (raw[-1:] == b"\xff")) in rejected.detail
    assert not isinstance(parse_line(f"{T},1,GET /rate/{'b' * (MAX_LINE_CHARS - 34)}=4"), Rejection)


def test_invalid_utf8_is_rejected_not_raised():
    rejected = parse_line(b"2026-03-18T06:12:47,1,GET /rate/\xff\xfe=4")
    assert isinstance(rejected, Rejection) and rejected.reason == "bad_request"
    assert "\ufffd" in rejected.line


def test_non_canonical_lines_normalize_to_the_same_event():
    # Accepted, but formatted back in canonical form (zero microseconds dropped, no leading zeros).
    event = parse_line(f"{T}.000000,1,GET /data/m/heat/007.mpg")
    assert format_event(event) == f"{T},1,GET /data/m/heat/7.mpg"


def test_format_refuses_non_events():
    with pytest.raises(TypeError):
        format_event(Rejection("x", "empty"))


# -- properties -------------------------------------------------------------------------------
times = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
users = st.integers(0, MAX_USER_ID)
slugs = st.one_of(
    st.from_regex(SLUG_RE, fullmatch=True),
    st.builds(make_slug, st.text(max_size=30), st.none() | st.integers(1000, 2999)),
)
servers = st.from_regex(r"[A-Za-z0-9._:-]{1,20}(@[a-z0-9][a-z0-9._-]{0,20})?", fullmatch=True)
error_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40)
response_ms = st.integers(0, 999_999_999)

events = st.one_of(
    st.builds(WatchEvent, times, users, slugs, st.integers(0, 99_999)),
    st.builds(RateEvent, times, users, slugs, st.integers(1, 5)),
    st.builds(AccountEvent, times, users),
    st.builds(RecommendationEvent, times, users, servers, st.just(200),
              st.lists(slugs, max_size=MAX_RESULTS).map(tuple), response_ms),
    st.builds(RecommendationEvent, times, users, servers,
              st.sampled_from([0, 100, 204, 400, 404, 500, 503, 599]), st.just(()), response_ms, error_text),
)


@given(events)
def test_format_parse_round_trip(event):
    line = format_event(event)
    parsed = parse_line(line)
    assert parsed == event
    assert format_event(parsed) == line


@given(st.text(max_size=300))
def test_parse_line_never_raises_on_text(text):
    result = parse_line(text)
    if isinstance(result, Rejection):
        assert result.reason in REASONS
    else:  # whatever is accepted is a valid event: its canonical line parses back to it
        assert parse_line(format_event(result)) == result


@given(st.binary(max_size=300))
def test_parse_line_never_raises_on_bytes(data):
    assert parse_line(data).kind in (*EVENT_KINDS, "rejection")


@given(events, st.data())
def test_mutated_lines_never_raise(event, data):
    """Valid lines with one character replaced, inserted or deleted: an event or a rejection."""
    line = format_event(event)
    i = data.draw(st.integers(0, len(line)))
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    ch = data.draw(st.characters(blacklist_categories=("Cs",)))
    mutated = {"replace": line[:i] + ch + line[i + 1:], "insert": line[:i] + ch + line[i:],
               "delete": line[:i] + line[i + 1:]}[op]
    assume(mutated != line)
    result = parse_line(mutated)
    if isinstance(result, Rejection):
        assert result.reason in REASONS
    else:
        assert parse_line(format_event(result)) == result
