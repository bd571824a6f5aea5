"""The offline-evaluation report: one self-contained HTML page with embedded PNG plots.

The Kubeflow dashboard renders an `HTML` output artifact in the run's visualization tab, so the
page carries everything inline (no external files, no scripts): a table of metrics per model,
NDCG/precision/recall/hit rate per model, the distribution of per-user NDCG, catalogue coverage
against popularity bias, and the breakdown by user activity. `render_markdown` gives the same
tables for terminals and pull requests.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from components.core.params import LIST_METRICS as _LIST_METRICS


def _models(evaluation_sets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every distinct evaluated model (candidates, the baseline once, references), in order."""
    seen, out = set(), []
    for ev in evaluation_sets:
        for entry in [ev["candidate"], ev["baseline"], *ev.get("references", {}).values()]:
            if entry["name"] not in seen:
                seen.add(entry["name"])
                out.append(entry)
    return out


def definitions(k: int, primary: str | None = None) -> dict[str, str]:
    """What each column of the report's tables means (printed under them)."""
    meanings = {
        "rmse, mae": "error of the predicted rating on the validation ratings, in stars (1-5); lower is better",
        f"precision@{k}": f"share of a user's top {k} that is relevant, averaged over users",
        f"recall@{k}": f"share of a user's relevant movies that made the top {k}, averaged over users",
        f"ndcg@{k}": "how near the top the relevant movies rank (1 = all of them first), averaged over users",
        f"hit_rate@{k}": f"share of users with at least one relevant movie in their top {k}",
        f"coverage@{k}": "share of the model's catalogue that appears in some user's list",
        f"popularity_bias@{k}": "mean share of training users who had watched or rated a listed movie "
                                "(higher: more popular movies)",
        "users": "validation users evaluated",
        "group": "new: no training history (served the model's cold-start list); light: at most the median history; "
                 "heavy: more",
    }
    if primary in meanings:
        meanings[primary] += "; the publish gate's metric"
    return meanings


def _legend_below(ax, n: int) -> None:
    """The legend under the axes, where it cannot cover a bar or a line."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=min(2, max(1, n)), fontsize=7, frameon=False)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(evaluation_sets: list[dict[str, Any]]) -> dict[str, str]:
    """Base64 PNGs by title: metric per model, per-user NDCG distribution, coverage vs popularity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = evaluation_sets[0]["k"]
    models = _models(evaluation_sets)
    names = [m["name"] for m in models]
    out = {}

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(models))
    x = np.arange(len(_LIST_METRICS))
    for j, m in enumerate(models):
        ax.bar(x + j * width, [m["metrics"].get(f"{metric}@{k}", 0.0) for metric in _LIST_METRICS], width,
               label=m["name"])
    ax.set_xticks(x + width * (len(models) - 1) / 2, [f"{metric}@{k}" for metric in _LIST_METRICS])
    ax.set_title(f"Top-{k} quality per model (higher is better)")
    ax.set_xlabel(f"metric of each validation user's top {k}, averaged over users")
    ax.set_ylabel("score (0-1)")
    _legend_below(ax, len(models))
    out["Top-k metrics per model"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = np.linspace(0, 1, 21)
    for m in models:
        values = np.asarray(m.get("ndcg_per_user", []), dtype=float)
        if len(values):
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{m['name']} (n={len(values)})")
    ax.set_xlabel(f"NDCG@{k} of a user")
    ax.set_ylabel("users")
    ax.set_title(f"Distribution of per-user NDCG@{k}")
    if ax.get_legend_handles_labels()[0]:
        ax.xaxis.set_label_coords(0.5, -0.1)
        _legend_below(ax, len(models))
    out[f"Per-user NDCG@{k}"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    cov = [m["metrics"].get(f"coverage@{k}", 0.0) for m in models]
    pop = [m["metrics"].get(f"popularity_bias@{k}", 0.0) for m in models]
    x = np.arange(len(models))
    ax.bar(x - 0.2, cov, 0.4, label="catalogue coverage")
    ax.bar(x + 0.2, pop, 0.4, label="popularity bias (mean share of train users)")
    ax.set_xticks(x, names, fontsize=7)
    ax.set_title(f"Catalogue coverage and popularity bias of the top-{k} lists")
    ax.set_xlabel("model")
    ax.set_ylabel("share (0-1)")
    _legend_below(ax, 2)
    out["Coverage and popularity bias"] = _png(fig)
    return out


def _table(models: list[dict[str, Any]], keys: list[str]) -> list[list[str]]:
    rows = [["model", *keys]]
    for m in models:
        rows.append([m["name"], *[_fmt(m["metrics"].get(key)) for key in keys]])
    return rows


def _activity_table(models: list[dict[str, Any]], k: int) -> list[list[str]]:
    rows = [["model", "group", "users", *[f"{metric}@{k}" for metric in _LIST_METRICS]]]
    for m in models:
        for group, values in m.get("by_activity", {}).items():
            rows.append([m["name"], group, _fmt(values.get("users")),
                         *[_fmt(values.get(f"{metric}@{k}")) for metric in _LIST_METRICS]])
    return rows


def _gate_table(evaluation_sets: list[dict[str, Any]]) -> list[list[str]]:
    """Per candidate and compared model: the paired difference on the gate's metric, its
    interval, width and users, and the gate's decision when the set carries it."""
    rows = [["model", "against", "difference", "low", "high", "width", "users", "level", "gate"]]
    for ev in evaluation_sets:
        comparisons, decision = ev.get("comparisons", {}), ev.get("gate") or {}
        verdict = "-" if not decision else ("passed" if decision.get("candidate") else "rejected")
        for role, c in comparisons.get("by_role", {}).items():
            rows.append([ev["candidate"]["name"], f"{role} ({c.get('name', role)})", f"{c['difference']:+.4f}",
                         f"{c['low']:+.4f}", f"{c['high']:+.4f}", f"{c['width']:.4f}", str(c["users"]),
                         f"{c['level']:.1%}", verdict])
    return rows


def gate_notes(evaluation_sets: list[dict[str, Any]]) -> list[str]:
    """What the gate compares and, where known, what it decided and why, one line each."""
    notes = []
    for ev in evaluation_sets:
        c = ev.get("comparisons")
        if c:
            notes.append(f"{ev['candidate']['name']}: paired per-user differences of {c['metric']} "
                         f"(candidate - other) with a {c['level']:.1%} bootstrap interval ({c['resamples']} "
                         f"resamples of the users; {c['confidence']:.0%} simultaneous over "
                         f"{c['simultaneous_over']} algorithm(s) on this split). The gate needs the lower bound "
                         "above 0 against popularity and above minus the margin against stable.")
        if ev.get("gate"):
            g = ev["gate"]
            notes.append(f"{ev['candidate']['name']}: gate {'passed' if g['candidate'] else 'rejected'}: "
                         + "; ".join(g["reasons"]))
    return notes


def _metric_keys(k: int) -> list[str]:
    return ["rmse", "mae", *[f"{m}@{k}" for m in _LIST_METRICS], f"coverage@{k}", f"popularity_bias@{k}", "users"]


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4f}"


def render_markdown(evaluation_sets: list[dict[str, Any]], title: str = "Offline evaluation",
                    notes: list[str] | None = None) -> str:
    k = evaluation_sets[0]["k"]
    models = _models(evaluation_sets)
    lines = [f"# {title}", "", f"Relevant: {evaluation_sets[0].get('relevance', '')}. "
             f"Data snapshot `{evaluation_sets[0].get('snapshot', '')[:12]}`.", ""]
    notes = [*(notes or []), *gate_notes(evaluation_sets)]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    tables = [_table(models, _metric_keys(k)), _activity_table(models, k)]
    gate_rows = _gate_table(evaluation_sets)
    if len(gate_rows) > 1:
        tables.append(gate_rows)
    for rows in tables:
        lines.append("| " + " | ".join(rows[0]) + " |")
        lines.append("|" + "---|" * len(rows[0]))
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        lines.append("")
    lines += [f"- **{column}**: {meaning}" for column, meaning in definitions(
        k, evaluation_sets[0].get("primary_metric")).items()] + [""]
    return "\n".join(lines)


def render_html(evaluation_sets: list[dict[str, Any]], title: str = "Offline evaluation",
                notes: list[str] | None = None) -> str:
    """A self-contained HTML report of one or several evaluation sets (same split)."""
    k = evaluation_sets[0]["k"]
    models = _models(evaluation_sets)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}dt{font-weight:bold}"
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p>Relevant: {html.escape(evaluation_sets[0].get('relevance', ''))}. Data snapshot "
             f"<code>{html.escape(evaluation_sets[0].get('snapshot', '')[:12])}</code>.</p>"]
    notes = [*(notes or []), *gate_notes(evaluation_sets)]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    gate_rows = _gate_table(evaluation_sets)
    sections = [("Metrics per model", _table(models, _metric_keys(k))),
                ("By user activity", _activity_table(models, k))]
    if len(gate_rows) > 1:
        sections.append(("The gate: paired per-user differences", gate_rows))
    for heading, rows in sections:
        parts.append(f"<h2>{heading}</h2><table>")
        parts.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
        parts.append("</table>")
    parts.append("<h2>What the columns mean</h2><dl>" + "".join(
        f"<dt>{html.escape(c)}</dt><dd>{html.escape(m)}</dd>" for c, m in definitions(k, evaluation_sets[0].get("primary_metric")).items())
        + "</dl>")
    for caption, png in plots(evaluation_sets).items():
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' "
                     f"src='data:image/png;base64,{png}'/>")
    parts.append("</body></html>")
    return "\n".join(parts)
