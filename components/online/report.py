"""What online evaluation hands on: a report for people and `movierec_online_*` metrics for Prometheus.

    online-eval.json     every figure per version with n and interval, the canary analysis, drift
    report.html          the same for a browser: tables with every column defined, the plots inline
    report.md            the same as Markdown tables (terminals, pull requests)
    online-metrics.png   hit rate, availability, p95 latency and requests over time per version
    online-metrics.prom  the Prometheus text format (node-exporter's textfile collector reads it;
                         `online-eval --follow` also serves it on /metrics, job movierec-online-eval)

`movierec_pipeline_last_success_timestamp_seconds` is exported here too: the training time of
the newest published model card in the store. A pipeline run that publishes nothing (failed or
stopped) leaves it unchanged, which is what the "no successful training run" alert watches. No
Pushgateway is needed: the online-evaluation exporter is scraped anyway.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd
from prometheus_client import CollectorRegistry, Gauge, generate_latest

_FIGURES = ("hit_rate", "availability", "personalized_share", "watched_minutes_per_recommendation",
            "mean_rating_of_recommended")
_LATENCY = {"0.5": "latency_p50_seconds", "0.95": "latency_p95_seconds", "0.99": "latency_p99_seconds"}


def registry_for(result: dict) -> CollectorRegistry:
    """A fresh registry holding the gauges of one evaluation result."""
    reg = CollectorRegistry()

    def gauge(name, doc, labels=()):
        return Gauge(f"movierec_online_{name}", doc, list(labels), registry=reg)

    value = {f: gauge(f, f"{f.replace('_', ' ')} per version (recent horizon)", ["version"]) for f in _FIGURES}
    low = {f: gauge(f"{f}_ci_low", f"95% interval lower bound of {f}", ["version"]) for f in _FIGURES}
    high = {f: gauge(f"{f}_ci_high", f"95% interval upper bound of {f}", ["version"]) for f in _FIGURES}
    samples = gauge("samples", "sample size behind each figure", ["version", "figure"])
    requests = gauge("requests", "recommendation requests per version (recent horizon)", ["version"])
    hits = gauge("hits", "evaluated recommendations followed by a watch (recent horizon)", ["version"])
    latency = gauge("latency_seconds", "request latency quantiles from the request log", ["version", "quantile"])
    for version, m in result.get("recent", {}).items():
        requests.labels(version).set(m["requests"])
        hits.labels(version).set(m["hits"])
        for f in _FIGURES:
            est = m[f]
            samples.labels(version, f).set(est["n"])
            for g, key in ((value, "value"), (low, "low"), (high, "high")):
                if est[key] is not None:
                    g[f].labels(version).set(est[key])
        for q, key in _LATENCY.items():
            if m[key]["value"] is not None:
                latency.labels(version, q).set(m[key]["value"])
    drift = gauge("drift_score", "PSI of requested users / watched movies vs the training data", ["feature"])
    unknown = gauge("unknown_share", "share of requests / watches from users / movies unknown to the model",
                    ["feature"])
    for feature, d in (result.get("drift") or {}).items():
        if d.get("psi") is not None:
            drift.labels(feature).set(d["psi"])
        if d.get("unknown_share") is not None:
            unknown.labels(feature).set(d["unknown_share"])
    decision = gauge("canary_decision", "1 for the current canary decision", ["canary", "decision"])
    analysis = result.get("canary")
    if analysis and analysis.get("canary"):
        decision.labels(analysis["canary"], analysis["decision"]).set(1)
    for name, key, doc in (("watermark_timestamp_seconds", "consumed_until", "events fully evaluated up to"),
                           ("last_run_timestamp_seconds", "evaluated_at", "when online evaluation last ran")):
        if result.get(key):
            gauge(name, doc).set(pd.Timestamp(result[key]).timestamp())
    if result.get("last_training_success"):
        Gauge("movierec_pipeline_last_success_timestamp_seconds",
              "training time of the newest published model version", registry=reg
              ).set(pd.Timestamp(result["last_training_success"]).timestamp())
    return reg


def prometheus_text(result: dict) -> bytes:
    return generate_latest(registry_for(result))


def plot(series: pd.DataFrame, path: Path) -> Path | None:
    """Four panels over time, one line per version; the legend below the panels, never on the data."""
    if series.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = pd.to_datetime(series["time"])
    step = times.drop_duplicates().sort_values().diff().min()
    bucket = _duration(step) if pd.notna(step) else "bucket"
    span = times.max() - times.min()
    one_day = times.min().date() == times.max().date()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    panels = (("hit_rate", 100, "Hit rate of evaluated answers", "hit rate (%)"),
              ("availability", 100, "Availability (status 200 under 600 ms)", "answered in time (%)"),
              ("p95_ms", 1, "Latency, 95th percentile", "p95 latency (ms)"),
              ("requests", 1, f"Requests per {bucket}", f"requests per {bucket}"))
    for ax, (column, scale, title, ylabel) in zip(axes.flat, panels, strict=True):
        for version, g in series.groupby("version"):
            ax.plot(pd.to_datetime(g["time"]), g[column] * scale, marker=".", label=version)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if scale == 100:  # a share: never an axis past 100 %
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, 0), min(high, 101))
        # Clock times without an offset: the date goes into the axis label (one day) or the ticks.
        ax.xaxis.set_major_formatter(mdates.DateFormatter(
            "%H:%M:%S" if span < pd.Timedelta(minutes=10) else
            "%H:%M" if one_day else "%d %b\n%H:%M"))
    for ax in axes[1]:
        ax.set_xlabel(f"time (UTC) on {times.min():%d %b %Y}" if one_day else "time (UTC)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="model version", loc="lower center", ncol=min(3, len(labels)),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 + 0.03 * ((len(labels) - 1) // 3), 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _duration(step: pd.Timedelta) -> str:
    seconds = step.total_seconds()
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}" + ("s" if unit == "day" and n > 1 else "")
    return f"{seconds:g} s"


def _fmt(est: dict, pct: bool = False, short: bool = False) -> str:
    if est["value"] is None:
        return f"n/a (n={est['n']})"
    f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3g}")
    if short:
        return f(est["value"])
    ci = f" [{f(est['low'])}, {f(est['high'])}]" if est["low"] is not None and est["high"] is not None else ""
    return f"{f(est['value'])}{ci} (n={est['n']})"


# Every column of the per-version table, with what it means (the report prints these definitions).
COLUMNS = (
    ("requests", "recommendation requests the predictor logged for this version (answered or not)"),
    ("hit rate", "share of answered recommendations (status 200, a non-empty list) after which the user "
                 "watched at least one of the recommended movies within the window; answers whose window "
                 "has not ended yet are left out"),
    ("watched min / reco", "minutes of recommended movies watched within the window, per evaluated answer"),
    ("mean rating", "mean rating (1-5) users gave to recommended movies within the window; n = ratings"),
    ("known users", "share of answers to users in the version's training data, whose list the model could "
                    "personalize; a popularity list is the same for everyone whatever this says"),
    ("availability", "share of requests answered with status 200 in under 600 ms"),
    ("p50 / p95 / p99 s", "latency quantiles of the answers, in seconds, from the request log"),
)
_DRIFT = {"users": "users who asked for recommendations", "movies": "movies users watched"}


def _rows(result: dict) -> list[list[str]]:
    rows = []
    for version, m in result["versions"].items():
        rows.append([version, str(m["requests"]), _fmt(m["hit_rate"], True),
                     _fmt(m["watched_minutes_per_recommendation"]), _fmt(m["mean_rating_of_recommended"]),
                     _fmt(m["personalized_share"], True), _fmt(m["availability"], True),
                     " / ".join(_fmt(m[k], short=True) for k in _LATENCY.values())])
    return rows


def _canary_lines(analysis: dict | None) -> tuple[str, list[str]] | None:
    if not analysis:
        return None
    head = (f"stable {analysis['stable']}, canary {analysis['canary']} ({analysis['canary_percent']:g}% of "
            f"users): {analysis['decision']}" + (f" (acted: {analysis['acted']})" if analysis.get("acted") else ""))
    return head, list(analysis["reasons"])


def _canary_difference(analysis: dict | None) -> tuple[list[list[str]], str] | None:
    """The canary against stable: rows of (what, canary, stable) and the difference with its intervals."""
    d, arms = (analysis or {}).get("difference"), (analysis or {}).get("arms") or {}
    if not d or not arms:
        return None
    rows = [["users (evaluated)", str(arms["canary"]["evaluated_users"]), str(arms["stable"]["evaluated_users"])],
            ["answers (evaluated; failed answers count as misses)", str(arms["canary"]["evaluated"]),
             str(arms["stable"]["evaluated"])],
            ["hit rate (95% interval, users as the unit)", _fmt(arms["canary"]["hit_rate"], True),
             _fmt(arms["stable"]["hit_rate"], True)]]
    text = (f"Difference {d['diff']:+.4f}: 95% interval {d['low']:+.4f}..{d['high']:+.4f} at this look; "
            f"always-valid interval {d['always_low']:+.4f}..{d['always_high']:+.4f} (valid at every look since "
            "the canary started: the decision is taken when it excludes 0).")
    return rows, text


def _drift_lines(drift: dict | None) -> list[str]:
    lines = []
    for feature, d in (drift or {}).items():
        what = _DRIFT.get(feature, feature)
        if d.get("psi") is None:
            lines.append(f"{what}: not enough data to compare (n={d.get('n', 0)})")
        else:
            unknown = d.get("unknown_share")
            lines.append(f"{what}: PSI {d['psi']:.3f} (under 0.1 stable, 0.1-0.25 moderate, over 0.25 large shift)"
                         + (f", {100 * unknown:.1f}% unknown to the model" if unknown is not None else "")
                         + f" (n={d['n']})")
    return lines


def _when(text: str | None) -> str:
    return text[:19].replace("T", " ") if text else "-"


def _intro(result: dict) -> str:
    window = pd.Timedelta(result["window"])
    return (f"Window {_duration(window)} (how long after an answer a watch still counts); data from "
            f"{_when(result.get('data_from'))} to {_when(result.get('data_until'))} UTC; every answer before "
            f"{_when(result.get('consumed_until'))} is final. Figures show value [95% interval] (n = sample "
            "size): the hit rate's interval takes the user as the unit (delta method over per-user totals); "
            "Wilson intervals for other shares, t intervals for means, order statistics for latency.")


def markdown(result: dict, image: str | None) -> str:
    headers = ["version", *(c for c, _ in COLUMNS)]
    lines = ["# Online evaluation", "", _intro(result), "",
             "| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(result)]
    lines += ["", *(f"- **{c}**: {d}" for c, d in COLUMNS)]
    canary = _canary_lines(result.get("canary"))
    if canary:
        lines += ["", "## Canary", "", f"**{canary[0]}**", "", *(f"- {r}" for r in canary[1])]
        difference = _canary_difference(result.get("canary"))
        if difference:
            lines += ["", "| | canary | stable |", "|---|---|---|",
                      *("| " + " | ".join(row) + " |" for row in difference[0]), "", difference[1]]
    if result.get("drift"):
        lines += ["", "## Input drift against the training data (population stability index)", ""]
        lines += [f"- {line}" for line in _drift_lines(result["drift"])]
    if image:
        lines += ["", f"![online metrics per version over time]({image})"]
    return "\n".join(lines) + "\n"


def render_html(result: dict, image: Path | None, canary_image: Path | None = None) -> str:
    """The report as one self-contained page (the plot inline), for a browser."""
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Online evaluation</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:75em}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}dt{font-weight:bold}img{max-width:100%}</style></head><body>",
             "<h1>Online evaluation</h1>", f"<p>{e(_intro(result))}</p>", "<h2>Per model version</h2><table>",
             "<tr>" + "".join(f"<th>{e(c)}</th>" for c in ["version", *(c for c, _ in COLUMNS)]) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in _rows(result)]
    parts.append("</table><dl>" + "".join(f"<dt>{e(c)}</dt><dd>{e(d)}</dd>" for c, d in COLUMNS) + "</dl>")
    canary = _canary_lines(result.get("canary"))
    if canary:
        parts.append(f"<h2>Canary</h2><p><strong>{e(canary[0])}</strong></p><ul>"
                     + "".join(f"<li>{e(r)}</li>" for r in canary[1]) + "</ul>")
        difference = _canary_difference(result.get("canary"))
        if difference:
            parts.append("<table><tr><th></th><th>canary</th><th>stable</th></tr>"
                         + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>"
                                   for row in difference[0]) + f"</table><p>{e(difference[1])}</p>")
        if canary_image:
            png = base64.b64encode(canary_image.read_bytes()).decode()
            parts.append("<img alt='hit-rate difference of the canary over time' "
                         f"src='data:image/png;base64,{png}'/>")
    if result.get("drift"):
        parts.append("<h2>Input drift against the training data (population stability index)</h2><ul>"
                     + "".join(f"<li>{e(line)}</li>" for line in _drift_lines(result["drift"])) + "</ul>")
    if image:
        png = base64.b64encode(image.read_bytes()).decode()
        parts.append("<h2>Over time</h2><img alt='online metrics per version over time' "
                     f"src='data:image/png;base64,{png}'/>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def plot_canary(path_df: pd.DataFrame | None, analysis: dict, path: Path) -> Path | None:
    """The canary's hit-rate difference over time with its fixed and always-valid intervals."""
    if path_df is None or path_df.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = pd.to_datetime(path_df["time"])
    span, one_day = times.max() - times.min(), times.min().date() == times.max().date()
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.fill_between(times, 100 * path_df["always_low"], 100 * path_df["always_high"], alpha=0.2,
                    label="always-valid interval (decides when it excludes 0)")
    ax.fill_between(times, 100 * path_df["low"], 100 * path_df["high"], alpha=0.3,
                    label="95% interval at that look")
    ax.plot(times, 100 * path_df["diff"], marker=".", label="canary minus stable")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(f"Hit rate of canary {analysis['canary']} minus stable {analysis['stable']}\n"
                 f"(users as the unit): {analysis['decision']}", fontsize="medium")
    ax.set_ylabel("difference of hit rate (percentage points)")
    ax.set_xlabel(f"time (UTC) on {times.min():%d %b %Y}" if one_day else "time (UTC)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter(
        "%H:%M:%S" if span < pd.Timedelta(minutes=10) else "%H:%M" if one_day else "%d %b\n%H:%M"))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(result: dict, series: pd.DataFrame, directory: str | Path,
                 canary_path: pd.DataFrame | None = None) -> Path:
    """Write JSON, HTML, Markdown, PNGs and the Prometheus text file into `directory`; return it.

    `canary_path` is `components.online.canary.trajectory`: the difference along the way, plotted
    per canary as `canary-<version>.png`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "online-eval.json").write_text(json.dumps(result, indent=2, default=str))
    image = plot(series, out / "online-metrics.png")
    analysis = result.get("canary") or {}
    canary_image = (plot_canary(canary_path, analysis, out / f"canary-{analysis['canary']}.png")
                    if analysis.get("canary") else None)
    text = markdown(result, image.name if image else None)
    if canary_image:
        text += f"\n![hit-rate difference of the canary over time]({canary_image.name})\n"
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(render_html(result, image, canary_image))
    (out / "online-metrics.prom").write_bytes(prometheus_text(result))
    return out
