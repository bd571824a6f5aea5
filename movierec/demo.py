"""`movierec demo`: the whole loop on one machine, on the embedded default.

    simulate a history ─▶ kfp.local pipeline (ingest, preprocess, train SVD + SVD++, evaluate,
    publish) ─▶ serve the pipeline's winner (stable) + the other model (canary) ─▶ simulated
    users at /recommend ─▶ swap a popularity model in as canary under load ─▶ roll the server
    (new instance, same port) under load ─▶ online evaluation per version ─▶ demo-output/summary.json

Everything lands in one output folder: the event log (the simulator's events and the
predictor's request lines, one file), the artifact store, the pipeline root, server logs, the
online-evaluation report and the summary. The personalized versions must beat the popularity
list online; if they don't, the loop is broken and the demo exits non-zero.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

STAGES: dict[str, float] = {}


def say(text: str) -> None:
    typer.echo(text, err=False)


@contextmanager
def stage(name: str):
    say(f"\n== {name}")
    started = time.perf_counter()
    yield
    STAGES[name] = round(time.perf_counter() - started, 1)
    say(f"   done in {STAGES[name]:.1f} s")


def drive(service, url: str, log, n_requests: int, concurrency: int, label: str) -> dict:
    """Send simulated users at the server; append their reactions to the log; return the counts."""
    every = max(1, n_requests // 10)
    done = 0
    for line in service.serve_traffic(url, n_requests=n_requests, concurrency=concurrency):
        log.append(line)
        if service.traffic.requests >= done + every:
            done = service.traffic.requests
            say(f"   {label}: {done}/{n_requests} requests, {service.traffic.failed} failed")
    log.flush()
    stats = service.traffic
    return {"requests": stats.requests, "answered": stats.answered, "failed": stats.failed,
            "followed": stats.followed}


def demo(
    output: Annotated[Path, typer.Option(help="Folder for everything the demo writes (wiped first).")] = Path(
        "demo-output"),
    seed: Annotated[int, typer.Option(help="Seed of the simulated service (users, tastes, catalogue).")] = 7,
    users: Annotated[int, typer.Option(help="Simulated users (more than the requests of all phases: each asks once).")] = 2500,
    movies: Annotated[int, typer.Option(help="Movies in the simulated catalogue.")] = 400,
    days: Annotated[int, typer.Option(help="Days of simulated history to train on.")] = 21,
    corrupt_rate: Annotated[float, typer.Option(help="Share of corrupted lines in the history.")] = 0.01,
    requests: Annotated[int, typer.Option(help="Recommendation requests per traffic phase.")] = 700,
    concurrency: Annotated[int, typer.Option(help="Concurrent simulated users during traffic.")] = 4,
    canary_percent: Annotated[float, typer.Option(help="Share of users sent to the canary.")] = 50.0,
) -> None:
    """Run the whole loop on the embedded default and write OUTPUT/summary.json."""
    from components.core import rollout
    from components.core.eventlog import open_event_log
    from components.core.params import load_params
    from components.core.store import open_store
    from components.online.join import frames_from_log
    from components.online.run import run_once
    from components.training.preprocess import prepare
    from components.training.train import train
    from pipelines.local import run_local
    from predictor import supervisor
    from simulator.service import StreamingService

    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    output = output.resolve()
    log_path, store_uri = output / "events.log", str(output / "store")
    log_uri = f"file:{log_path}"
    store = open_store(store_uri)
    summary: dict = {"settings": {"seed": seed, "users": users, "movies": movies, "days": days,
                                  "corrupt_rate": corrupt_rate, "requests_per_phase": requests,
                                  "canary_percent": canary_percent}}
    started = time.perf_counter()

    with stage(f"1/6 simulate {days} days of a streaming service ({users} users, {movies} movies)"):
        service = StreamingService(seed=seed, n_users=users, n_movies=movies, corrupt_rate=corrupt_rate)
        with open_event_log(log_uri) as log:
            n = log.extend(service.history(days=days, progress=_day_progress))
        summary["simulated"] = {"lines": n, "corrupted": service.corrupted, "by_kind": dict(service.counts)}
        say(f"   {n} lines, {service.corrupted} corrupted on purpose -> {log_path.name}")

    with stage("2/6 training pipeline (kfp.local): ingest, preprocess, train SVD + SVD++, evaluate, publish"):
        run = run_local(log_uri, store_uri, str(output / "pipeline-root"), progress=lambda s: say("   " + s))
        ingest = _ingest_report(store)
        models = {p["algorithm"]: p for p in run.published}
        summary["pipeline"] = {"seconds": run.seconds, "step_seconds": run.step_seconds, "winner": run.winner}
        summary["events"] = ingest
        for algo, p in sorted(models.items()):
            say(f"   {algo}: {p['version']} RMSE {p['metrics'].get('rmse', float('nan')):.3f} "
                f"NDCG@20 {p['metrics'].get('ndcg@20', float('nan')):.3f} candidate={p['candidate']}")

    with stage("3/6 popularity baseline as a servable version; the better model stable, the other canary"):
        dataset = prepare(store, load_params())
        rec, card = train(dataset, "popularity", load_params())
        popularity = rec.fitted.with_seen(dataset.serving_seen_csr).save(store, card)   # masked as publish does
        svd, svdpp = models["svd"]["version"], models["svdpp"]["version"]
        # The pipeline's winner (the better gated candidate on NDCG@20) is stable; the other one
        # is the canary whatever its gate said: the demo wants both online, and says so.
        ranked = sorted(models.values(), key=lambda p: (p["version"] == run.winner,
                                                        p["metrics"].get("ndcg@20", 0.0)), reverse=True)
        stable, canary = ranked[0]["version"], ranked[1]["version"]
        rollout.set_stable(store, stable, reason="demo: the pipeline's winner")
        rollout.start_canary(store, canary, canary_percent, reason="demo: the other model, gate or not")
        say(f"   stable {stable}, canary {canary} ({canary_percent:.0f}% of users)")
        summary["models"] = {algo: {"version": p["version"], "rmse": p["metrics"].get("rmse"),
                                    "offline": p["metrics"], "gate": {"candidate": p["candidate"],
                                                                      "reasons": p["reasons"]}}
                             for algo, p in models.items()}
        summary["models"]["popularity"] = {"version": popularity, "rmse": None}

    port = supervisor.free_port()
    url = f"http://127.0.0.1:{port}"
    serve_args = supervisor.serve_args(store_uri, port, request_log=log_uri, poll_seconds=0.5)
    server_log = open(output / "server.log", "ab")
    with stage(f"4/6 serve stable + canary on {url}; simulated users ask for recommendations"):
        server = supervisor.start_instance(serve_args, output / "ready-1", log_file=server_log)
        supervisor.wait_ready(server, output / "ready-1")
        log = open_event_log(log_uri)
        live_from = datetime.now(UTC).replace(tzinfo=None)
        phases = {"svd-vs-svdpp": drive(service, url, log, requests, concurrency, "phase 1")}

    with stage("5/6 canary swapped to the popularity model under load, then a rolling restart under load"):
        swap = threading.Timer(0.2, rollout.start_canary, (store, popularity, canary_percent),
                               {"reason": "demo: popularity baseline as canary"})
        swap.start()
        phases["svd-vs-popularity"] = drive(service, url, log, requests, concurrency, "phase 2")
        swap.join()
        rolled = {}
        roller = threading.Thread(target=lambda: rolled.update(
            server=supervisor.roll(server, serve_args, output / "ready-2", log_file=server_log)))
        roller.start()
        phases["rolling-restart"] = drive(service, url, log, max(300, requests // 5), concurrency, "phase 3")
        roller.join()
        server = rolled.get("server", server)
        log.close()
        summary["traffic"] = phases

    with stage("6/6 online evaluation: recommendations joined with what users watched next"):
        supervisor.stop_instance(server)
        server_log.close()
        # The log also holds the history (the legacy service's answers): evaluate the live traffic.
        frames = {kind: f[f["time"] >= live_from] for kind, f in frames_from_log(str(log_path)).items()}
        result = run_once(frames, store, report_dir=output / "online-report")
        summary["online"] = _online_summary(result, {svd: "svd", svdpp: "svdpp", popularity: "popularity"})

    summary["stage_seconds"] = STAGES
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _print_summary(summary)
    if not _personalized_beat_popularity(summary["online"]):
        say("\nFAILED: a personalized version did not beat the popularity list online: the loop is broken.")
        raise typer.Exit(1)


def _day_progress(day: int, days: int) -> None:
    if day % 7 == 0 or day == days:
        say(f"   day {day}/{days}")


def _ingest_report(store) -> dict:
    from components.core.events import EVENT_KINDS
    from components.core.snapshots import read_deadletters, read_events

    kinds = {k: len(read_events(store, k)) for k in EVENT_KINDS}
    dead = read_deadletters(store)
    return {"read": sum(kinds.values()) + len(dead), "stored": kinds, "rejected": len(dead),
            "rejected_by_reason": dead["reason"].value_counts().to_dict()}


def _online_summary(result: dict, names: dict[str, str]) -> dict:
    online = {}
    for version, m in result["versions"].items():
        if version not in names:
            continue
        online[names[version]] = {
            "version": version, "requests": m["requests"], "served": m["served"],
            "failed": m["requests"] - m["served"], "share_of_requests": None,
            "hit_rate": m["hit_rate"], "availability": m["availability"],
            "latency_p99_seconds": m["latency_p99_seconds"], "personalized_share": m["personalized_share"]}
    total = sum(v["requests"] for v in online.values()) or 1
    for v in online.values():
        v["share_of_requests"] = round(v["requests"] / total, 4)
    return {"per_version": online, "canary": result.get("canary")}


def _personalized_beat_popularity(online: dict) -> bool:
    per = online["per_version"]
    base = (per.get("popularity") or {}).get("hit_rate", {}).get("value")
    mine = [per[a]["hit_rate"]["value"] for a in ("svd", "svdpp") if a in per]
    return base is not None and bool(mine) and all(v is not None and v > base for v in mine)


def _print_summary(s: dict) -> None:
    e = s["events"]
    say("\n================ movierec demo summary ================")
    say(f"events read {e['read']}, rejected {e['rejected']} (simulated corrupted: {s['simulated']['corrupted']})")
    for algo, m in s["models"].items():
        rmse = f"{m['rmse']:.3f}" if m.get("rmse") is not None else "-"
        gate = m.get("gate") or {}
        passed = "" if not gate else ("  gate: candidate" if gate["candidate"] else "  gate: not a candidate")
        say(f"model {algo:<10} {m['version']:<40} offline RMSE {rmse}{passed}")
    say(f"{'version':<12}{'share':>7}{'requests':>10}{'failed':>8}{'hit rate':>10}   95% CI")
    for algo, m in s["online"]["per_version"].items():
        h = m["hit_rate"]
        say(f"{algo:<12}{m['share_of_requests']:>7.1%}{m['requests']:>10}{m['failed']:>8}{h['value']:>10.3f}"
            f"   [{h['low']:.3f}, {h['high']:.3f}]")
    say("stage seconds: " + ", ".join(f"{k.split(' ')[0]} {v}" for k, v in s["stage_seconds"].items()))
    say(f"total {s['seconds']} s; details in summary.json, online-report/, server.log")
