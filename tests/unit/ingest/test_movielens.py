"""MovieLens loader: each layout read from a tiny generated file (MovieLens itself is never shipped)."""

from __future__ import annotations

from datetime import datetime

import pytest
from typer.testing import CliRunner

from components.core.errors import NotFound, UserError
from components.core.events import RateEvent, parse_line
from components.ingest.movielens import convert, detect_format, read_ratings, to_events, to_rating

# (user, movie, rating, epoch seconds): deliberately out of time order, with half stars
ROWS = [(1, 31, 2.5, 1260759144), (1, 1029, 3.0, 1260759179), (7, 1, 5.0, 851866703), (2, 10, 0.5, 835355493)]


def write(tmp_path, layout: str):
    if layout == "u.data":
        path = tmp_path / "u.data"
        path.write_text("".join(f"{u}\t{m}\t{int(r + 0.5)}\t{t}\n" for u, m, r, t in ROWS))
    elif layout == "ratings.dat":
        path = tmp_path / "ratings.dat"
        path.write_text("".join(f"{u}::{m}::{int(r + 0.5)}::{t}\n" for u, m, r, t in ROWS))
    elif layout == "ratings.csv":
        path = tmp_path / "ratings.csv"
        path.write_text("userId,movieId,rating,timestamp\n" + "".join(f"{u},{m},{r},{t}\n" for u, m, r, t in ROWS))
    else:
        path = tmp_path / "ml-100k.inter"
        path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                        + "".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in ROWS))
    return path


@pytest.mark.parametrize("layout", ["u.data", "ratings.dat", "ratings.csv", "inter"])
def test_each_layout_is_read(tmp_path, layout):
    path = write(tmp_path, layout)
    assert detect_format(path) == layout
    frame = read_ratings(path)
    assert frame.columns.tolist() == ["user_id", "movie_id", "rating", "timestamp"]
    assert frame[["user_id", "movie_id", "timestamp"]].values.tolist() == [[u, m, t] for u, m, _, t in ROWS]


def test_layout_is_detected_from_content_when_the_name_says_nothing(tmp_path):
    for layout in ("u.data", "ratings.dat", "inter"):
        path = write(tmp_path, layout)
        renamed = path.rename(tmp_path / f"ratings-{layout.replace('.', '-')}")
        assert detect_format(renamed) == layout
    (tmp_path / "junk").write_text("hello world\n")
    with pytest.raises(UserError, match="not a MovieLens"):
        detect_format(tmp_path / "junk")


def test_ratings_round_half_up_into_one_to_five():
    assert [to_rating(x) for x in (0.5, 1.0, 2.5, 3.49, 4.5, 5.0)] == [1, 1, 3, 3, 5, 5]


def test_events_are_rate_lines_in_time_order(tmp_path):
    events = list(to_events(read_ratings(write(tmp_path, "ratings.csv"))))
    assert [e.time for e in events] == sorted(e.time for e in events)
    first = events[0]
    assert first == RateEvent(datetime(1996, 6, 21, 11, 11, 33), 2, "ml+10", 1)
    assert {e.movie_id for e in events} == {"ml+31", "ml+1029", "ml+1", "ml+10"}


def test_convert_writes_an_event_log_that_parses_back(tmp_path):
    out = tmp_path / "events.log"
    assert convert(write(tmp_path, "u.data"), f"file:{out}") == len(ROWS)
    parsed = [parse_line(line) for line in out.read_text().splitlines()]
    assert all(isinstance(e, RateEvent) for e in parsed) and len(parsed) == len(ROWS)


def test_movielens_command(tmp_path):
    from components.cli import app

    out = tmp_path / "ml.log"
    result = CliRunner().invoke(app, ["movielens", str(write(tmp_path, "ratings.dat")), "--to", f"file:{out}",
                                      "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert "2 rate events" in result.output and len(out.read_text().splitlines()) == 2


@pytest.mark.parametrize("bad_row", ["x\t2\t3\t881250949", "-4\t2\t3\t881250949", "4\t2\t7\t881250949",
                                     "4\t2\t3\t99999999999999", "4\t2\t\t881250949", "4\t2.5\t3\t881250949"])
def test_a_row_that_is_not_a_rating_is_one_error_and_nothing_is_written(tmp_path, bad_row):
    """It used to crash with a traceback, or write the rows before it and then crash."""
    path = tmp_path / "u.data"
    path.write_text(f"1\t2\t3\t881250949\n{bad_row}\n5\t6\t4\t881250950\n")
    out = tmp_path / "events.log"
    with pytest.raises(UserError, match="1 row\\(s\\) are not ratings, the first is data row 2"):
        convert(path, f"file:{out}")
    assert not out.exists() or out.read_text() == ""


def test_the_command_says_what_is_wrong_in_one_line(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\t881250949\nx\t2\t3\t881250949\n")
    with pytest.raises(NotFound):
        read_ratings(tmp_path / "missing.csv")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "movierec.cli", "movielens", str(path), "--to",
                           f"file:{tmp_path / 'out.log'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "row(s) are not ratings" in proc.stderr and "Traceback" not in proc.stderr
