"""The online report reads without the code beside it: every column defined, no raw `None`, a
time axis without offsets, the plot inline in the HTML page."""

from __future__ import annotations

import pandas as pd

from components.online.report import COLUMNS, markdown, render_html, write_report


def _est(value, n=100):
    return {"value": value, "n": n, "low": None if value is None else value * 0.9,
            "high": None if value is None else min(1.0, value * 1.1), "method": "wilson"}


def _result() -> dict:
    figures = {"requests": 120, "hit_rate": _est(0.42), "watched_minutes_per_recommendation": _est(12.5),
               "mean_rating_of_recommended": _est(None, 0), "personalized_share": _est(0.9),
               "availability": _est(1.0), "latency_p50_seconds": _est(0.002), "latency_p95_seconds": _est(0.004),
               "latency_p99_seconds": _est(0.01)}
    return {"window": "0:30:00", "data_from": "2026-03-18T12:00:00.123456", "data_until": "2026-03-18T15:00:00",
            "consumed_until": "2026-03-18T14:30:00", "versions": {"svd-a": figures, "pop-b": figures},
            "recent": {}, "canary": {"stable": "svd-a", "canary": "pop-b", "canary_percent": 50.0,
                                     "decision": "rollback", "reasons": ["canary worse"], "acted": "rollback"},
            "drift": {"users": {"psi": None, "unknown_share": None, "n": 0},
                      "movies": {"psi": 0.31, "unknown_share": 0.02, "n": 500}}}


def _series() -> pd.DataFrame:
    times = pd.date_range("2026-03-18T12:00:00", periods=12, freq="15min")
    rows = [{"version": v, "time": t, "requests": 10 + i, "hit_rate": 0.4, "availability": 1.0, "p95_ms": 3.0}
            for v in ("svd-a", "pop-b") for i, t in enumerate(times)]
    return pd.DataFrame(rows)


def test_every_column_is_defined_and_nothing_prints_none():
    text = markdown(_result(), "online-metrics.png")
    header = next(line for line in text.splitlines() if line.startswith("| version"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == [c for c, _ in COLUMNS]
    for column, _ in COLUMNS:
        assert f"- **{column}**: " in text
    assert "None" not in text
    assert "not enough data to compare (n=0)" in text and "PSI 0.310" in text
    assert "Window 30 min" in text and "12:00:00 to" in text


def test_html_report_is_a_page_with_the_plot_inline(tmp_path):
    out = write_report(_result(), _series(), tmp_path / "report")
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert all(f"<dt>{column}</dt>" in page for column, _ in COLUMNS)
    assert "rollback (acted: rollback)" in page and "None" not in page


def test_html_report_without_traffic_has_no_plot():
    assert "<img" not in render_html(_result(), None)
