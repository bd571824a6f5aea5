"""What online evaluation hands on: a report for people and `movierec_online_*` metrics for Prometheus.

    online-eval.json     every figure per version with n and interval, the canary analysis, drift
    report.md            the same as tables, with the plots
    online-metrics.png   hit rate, availability, p95 latency and requests over time per version
    online-metrics.prom  the Prometheus text format (node-exporter's textfile collector reads it;
                         `online-eval --follow` also serves it on /metrics, job movierec-online-eval)

`movierec_pipeline_last_success_timestamp_seconds` is exported here too: the training time of
the newest published model card in the store. A pipeline run that publishes nothing (failed or
stopped) leaves it unchanged, which is what the "no successful training run" alert watches. No
Pushgateway is needed: the online-evaluation exporter is scraped anyway.
"""

from __future__ import annotations

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
    """Four panels over time, one line per version."""
    if series.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    panels = (("hit_rate", "hit rate (evaluated answers)"), ("availability", "availability (200, < 600 ms)"),
              ("p95_ms", "p95 latency (ms)"), ("requests", "requests per bucket"))
    for ax, (column, title) in zip(axes.flat, panels, strict=True):
        for version, g in series.groupby("version"):
            ax.plot(g["time"], g[column], marker=".", label=version)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(title="version")
    import matplotlib.dates as mdates

    for ax in axes.flat:   # readable times whatever the span: seconds of a demo or weeks of a cluster
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _fmt(est: dict, pct: bool = False) -> str:
    if est["value"] is None:
        return f"n/a (n={est['n']})"
    f = (lambda x: f"{100 * x:.2f}%") if pct else (lambda x: f"{x:.4g}")
    ci = f" [{f(est['low'])}, {f(est['high'])}]" if est["low"] is not None and est["high"] is not None else ""
    return f"{f(est['value'])}{ci} (n={est['n']})"


def markdown(result: dict, image: str | None) -> str:
    lines = ["# Online evaluation", "",
             f"Window {result['window']}, data {result.get('data_from')} .. {result.get('data_until')}, "
             f"fully evaluated until {result.get('consumed_until')}. Intervals are 95% "
             "(hit rate: users as the unit, delta method; Wilson for other shares, t for means, "
             "order statistics for latency).", "",
             "| version | requests | hit rate | watched min / reco | mean rating | personalized | availability "
             "| p50 s | p95 s | p99 s |", "|---" * 10 + "|"]
    for version, m in result["versions"].items():
        cells = [_fmt(m["hit_rate"], True), _fmt(m["watched_minutes_per_recommendation"]),
                 _fmt(m["mean_rating_of_recommended"]), _fmt(m["personalized_share"], True),
                 _fmt(m["availability"], True), *(_fmt(m[k]) for k in _LATENCY.values())]
        lines.append(f"| {version} | {m['requests']} | " + " | ".join(cells) + " |")
    analysis = result.get("canary")
    if analysis:
        lines += ["", "## Canary", "", f"stable `{analysis['stable']}`, canary `{analysis['canary']}` "
                  f"({analysis['canary_percent']}%): **{analysis['decision']}**"
                  + (f" (acted: {analysis['acted']})" if analysis.get("acted") else ""), ""]
        lines += [f"- {r}" for r in analysis["reasons"]]
        d, arms = analysis.get("difference"), analysis.get("arms") or {}
        if d and arms:
            lines += ["", "| | canary | stable |", "|---|---|---|",
                      f"| users (evaluated) | {arms['canary']['evaluated_users']} | {arms['stable']['evaluated_users']} |",
                      f"| answers (evaluated, failed count as misses) | {arms['canary']['evaluated']} | "
                      f"{arms['stable']['evaluated']} |",
                      f"| hit rate (95% CI, users as the unit) | {_fmt(arms['canary']['hit_rate'], True)} | "
                      f"{_fmt(arms['stable']['hit_rate'], True)} |", "",
                      f"Difference {d['diff']:+.4f}: 95% interval {d['low']:+.4f}..{d['high']:+.4f} at this look; "
                      f"always-valid interval {d['always_low']:+.4f}..{d['always_high']:+.4f} (valid at every look "
                      "since the canary started: the decision is taken when it excludes 0)."]
    if result.get("drift"):
        lines += ["", "## Input drift (PSI vs training data)", ""]
        lines += [f"- {k}: PSI {d['psi']}, unknown share {d['unknown_share']} (n={d['n']})"
                  for k, d in result["drift"].items()]
    if image:
        lines += ["", f"![online metrics per version]({image})"]
    return "\n".join(lines) + "\n"


def plot_canary(path_df: pd.DataFrame | None, analysis: dict, path: Path) -> Path | None:
    """The canary's hit-rate difference over time with its fixed and always-valid intervals."""
    if path_df is None or path_df.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.fill_between(path_df["time"], path_df["always_low"], path_df["always_high"], alpha=0.2,
                    label="always-valid interval (decides)")
    ax.fill_between(path_df["time"], path_df["low"], path_df["high"], alpha=0.3, label="95% interval at that look")
    ax.plot(path_df["time"], path_df["diff"], marker=".", label="difference")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_title(f"hit rate of canary {analysis['canary']}\nminus stable {analysis['stable']} (users as the unit): "
                 f"{analysis['decision']}", fontsize="medium")
    ax.set_ylabel("difference of hit rate")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(result: dict, series: pd.DataFrame, directory: str | Path,
                 canary_path: pd.DataFrame | None = None) -> Path:
    """Write JSON, Markdown, PNGs and the Prometheus text file into `directory`; return it.

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
    (out / "online-metrics.prom").write_bytes(prometheus_text(result))
    return out
