"""`movierec demo`: the whole loop on one machine, on the embedded default.

    simulate a history ─▶ kfp.local pipeline (ingest, preprocess, train SVD + SVD++, evaluate,
    publish) ─▶ serve the pipeline's winner (stable) + the other model (canary) ─▶ simulated
    users at /recommend ─▶ swap a popularity model in as canary under load ─▶ roll the server
    (new instance, same port) under load ─▶ online evaluation per version ─▶ demo-output/summary.json

Everything lands in one output folder: the event log (the simulator's events and the
predictor's request lines, one file), the artifact store, the pipeline root, the offline and
online reports, the summary and `demo.log`, which takes everything the libraries print (Kubeflow's
executor dumps, log records): the console gets one progress line per step and a summary. The
demo ends with the canary decision of the same analysis `online-eval --auto` runs, acted on. The
personalized versions must beat the popularity list online; if they don't, the loop is broken
and the demo exits non-zero.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from movierec.console import output_to

STAGES: dict[str, float] = {}
_console = None  # the terminal while stdout and stderr go to demo.log


def say(text: str) -> None:
    print(text, file=_console or sys.stdout, flush=True)


@contextmanager
def stage(name: str, short: str):
    say(f"== {len(STAGES) + 1}/6 {name}")
    started = time.perf_counter()
    yield
    STAGES[short] = round(time.perf_counter() - started, 1)
    say(f"   done in {STAGES[short]:.1f} s")


def explain(text: str) -> None:
    """A definition for the summary, wrapped for a terminal."""
    say(textwrap.fill(text, width=100, subsequent_indent="  "))


@contextmanager
def console_to(log_path: Path):
    """The libraries' output (this process and every subprocess) to `log_path`; `say` still
    reaches the terminal. Restored before any error surfaces."""
    global _console
    with output_to(log_path) as console:
        _console = console
        try:
            yield
        except BaseException:
            say(f"   (the libraries' output is in {log_path})")
            raise
        finally:
            _console = None


def drive(service, url: str, log, n_requests: int, concurrency: int, label: str) -> dict:
    """Send simulated users at the server; append their reactions to the log; return the counts."""
    every = max(1, n_requests // 2)
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
    output: Annotated[Path, typer.Option(help="Folder for everything the demo writes (emptied first: only a "
                                                   "new, empty or earlier demo folder).")] = Path(
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
    _fresh_output(output)
    output = output.resolve()
    STAGES.clear()
    with console_to(output / "demo.log"):
        summary = _run(output, seed=seed, users=users, movies=movies, days=days, corrupt_rate=corrupt_rate,
                       requests=requests, concurrency=concurrency, canary_percent=canary_percent)
    _print_summary(summary, output)
    if not _winner_beat_popularity(summary):
        say("\nFAILED: the pipeline's winner (stable) did not beat the popularity list online: the loop is broken.")
        raise typer.Exit(1)


def _run(output: Path, *, seed: int, users: int, movies: int, days: int, corrupt_rate: float, requests: int,
         concurrency: int, canary_percent: float) -> dict:
    from components.core import rollout
    from components.core.eventlog import open_event_log
    from components.core.params import load_params
    from components.core.store import open_store
    from components.online.canary import CanaryPolicy
    from components.online.join import DEFAULT_WINDOW, frames_from_log
    from components.online.run import run_once
    from components.training.preprocess import prepare
    from components.training.train import train
    from pipelines.local import copy_offline_report, run_local
    from predictor import supervisor
    from simulator.service import StreamingService

    log_path, store_uri = output / "events.log", str(output / "store")
    log_uri = f"file:{log_path}"
    store = open_store(store_uri)
    summary: dict = {"settings": {"seed": seed, "users": users, "movies": movies, "days": days,
                                  "corrupt_rate": corrupt_rate, "requests_per_phase": requests,
                                  "canary_percent": canary_percent}}
    started = time.perf_counter()

    with stage(f"simulate {days} days of a streaming service ({users} users, {movies} movies)", "simulate"):
        service = StreamingService(seed=seed, n_users=users, n_movies=movies, corrupt_rate=corrupt_rate)
        with open_event_log(log_uri) as log:
            n = log.extend(service.history(days=days))
        summary["simulated"] = {"lines": n, "corrupted": service.corrupted, "by_kind": dict(service.counts)}
        say(f"   {n} event lines, {service.corrupted} corrupted on purpose -> {log_path.name}")

    with stage("training pipeline (kfp.local): ingest, preprocess, train each model, evaluate, publish",
               "pipeline"):
        run = run_local(log_uri, store_uri, str(output / "pipeline-root"), progress=_step_progress)
        ingest = _ingest_report(store)
        models = {p["algorithm"]: p for p in run.published}
        summary["pipeline"] = {"seconds": run.seconds, "step_seconds": run.step_seconds, "winner": run.winner}
        summary["events"] = ingest
        offline = copy_offline_report(output / "pipeline-root", output / "offline-report.html")
        summary["reports"] = {"offline": str(offline) if offline else None}

    with stage("versions: the pipeline's winner stable, the other model canary, a popularity baseline",
               "versions"):
        dataset = prepare(store, load_params())
        rec, card = train(dataset, "popularity", load_params())
        popularity = rec.fitted.with_seen(dataset.serving_seen_csr).save(store, card)   # masked as publish does
        # The pipeline's winner (the better gated candidate on NDCG@20) is stable; the other one
        # is the canary, forced past its gate if the gate rejected it: the demo wants both online.
        ranked = sorted(models.values(), key=lambda p: (p["version"] == run.winner,
                                                        p["metrics"].get("ndcg@20", 0.0)), reverse=True)
        stable, canary = ranked[0], ranked[1]
        rollout.set_stable(store, stable["version"], reason="demo: the pipeline's winner")
        forced = "" if canary["candidate"] else "; forced past the publish gate"
        rollout.start_canary(store, canary["version"], canary_percent,
                             reason="demo: the other model, to compare online" + forced)
        say(f"   stable {stable['algorithm']}, canary {canary['algorithm']} ({canary_percent:g}% of users)"
            + (" FORCED past its gate, which rejected it" if forced else ""))
        summary["models"] = {algo: {"version": p["version"], "rmse": p["metrics"].get("rmse"),
                                    "offline": p["metrics"], "gate": {"candidate": p["candidate"],
                                                                      "reasons": p["reasons"]}}
                             for algo, p in models.items()}
        summary["models"]["popularity"] = {"version": popularity, "rmse": None, "offline": {},
                                           "gate": None}
        summary["primary_metric"] = load_params()["evaluate"]["primary_metric"]
        summary["roles"] = {stable["algorithm"]: "stable", canary["algorithm"]: "canary, phase 1",
                            "popularity": "canary, phases 2-3"}

    port = supervisor.free_port()
    url = f"http://127.0.0.1:{port}"
    serve_args = supervisor.serve_args(store_uri, port, request_log=log_uri, poll_seconds=0.5)
    server_log = open(output / "server.log", "ab")
    with stage(f"serve stable + canary on {url}; simulated users ask for recommendations", "serve"):
        server = supervisor.start_instance(serve_args, output / "ready-1", log_file=server_log)
        supervisor.wait_ready(server, output / "ready-1")
        log = open_event_log(log_uri)
        live_from = datetime.now(UTC).replace(tzinfo=None)
        phases = {f"{stable['algorithm']}-vs-{canary['algorithm']}": drive(service, url, log, requests, concurrency, "phase 1")}

    with stage("popularity model as canary under load, then a rolling restart under load", "swap+roll"):
        swap = threading.Timer(0.2, rollout.start_canary, (store, popularity, canary_percent),
                               {"reason": "demo: popularity baseline as canary (never gated)"})
        swap.start()
        phases[f"{stable['algorithm']}-vs-popularity"] = drive(service, url, log, requests, concurrency, "phase 2")
        swap.join()
        rolled = {}
        roller = threading.Thread(target=lambda: rolled.update(
            server=supervisor.roll(server, serve_args, output / "ready-2", log_file=server_log)))
        roller.start()
        phase3 = max(300, requests // 5)
        phases["rolling-restart"] = drive(service, url, log, phase3, concurrency, "phase 3")
        roller.join()
        server = rolled.get("server", server)
        log.close()
        summary["traffic"] = phases

    with stage("online evaluation and the canary decision (as online-eval --auto)", "online"):
        supervisor.stop_instance(server)
        server_log.close()
        # The log also holds the history (the legacy service's answers): evaluate the live traffic.
        frames = {kind: f[f["time"] >= live_from] for kind, f in frames_from_log(str(log_path)).items()}
        # The sequential test is planned for the canary answers this demo sends (phases 2 and 3),
        # so that it may decide at the end instead of waiting for a cluster's traffic.
        planned = max(50, round((requests + phase3) * canary_percent / 100))
        # Its floors (users per arm, answers for the service objectives) scale with it too: the
        # canary's share of the demo's traffic varies from run to run around `planned`.
        policy = CanaryPolicy(min_per_arm=min(300, planned // 3), planned_canary=planned,
                              min_requests=min(200, planned // 3))
        result = run_once(frames, store, policy=policy, auto=True, report_dir=output / "online-report")
        summary["online"] = _online_summary(result, {stable["version"]: stable["algorithm"],
                                                           canary["version"]: canary["algorithm"],
                                                           popularity: "popularity"})
        summary["online"]["window"] = f"{DEFAULT_WINDOW.total_seconds() / 60:g} min"
        summary["rollout_after"] = {k: v for k, v in rollout.load(store).to_dict().items() if k != "history"}
        report = output / "online-report"
        summary["reports"]["online"] = str(next((p for p in (report / "report.html", report / "report.md")
                                                 if p.exists()), report))
        decision = result["canary"]
        say(f"   decision: {decision['decision']}" + (" (acted on)" if decision.get("acted") else ""))

    summary["stage_seconds"] = STAGES
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _step_progress(line: str) -> None:
    if not line.endswith("..."):  # one line per finished step, not two
        say("   " + line.strip())


MARKER = ".movierec-demo"  # written into every output folder: only such a folder is wiped on a rerun


def _fresh_output(output: Path) -> None:
    """Empty `output` for a new run, but only if it is empty or a previous demo's output."""
    from components.core.errors import UserError

    if output.exists():
        if not output.is_dir():
            raise UserError(f"--output {output} is a file, not a folder: choose another --output")
        if any(output.iterdir()) and not (output / MARKER).exists():
            raise UserError(f"--output {output} holds files the demo did not write; the demo empties its "
                            "output folder: choose a new or empty folder")
        shutil.rmtree(output)
    output.mkdir(parents=True)
    (output / MARKER).write_text("written by movierec demo; the next run empties this folder\n")


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


def _winner_beat_popularity(summary: dict) -> bool:
    """The pipeline's winner, served as stable, must beat the popularity list online. The runner-up
    (the phase-1 canary) passed the offline gate too, but at the demo's few hundred answers per arm
    a runner-up close to popularity is within noise of it: its figures are shown, not checked."""
    per = summary["online"]["per_version"]
    base = (per.get("popularity") or {}).get("hit_rate", {}).get("value")
    stable = [a for a, role in summary["roles"].items() if role.startswith("stable") and a in per]
    mine = [per[a]["hit_rate"]["value"] for a in stable]
    return base is not None and bool(mine) and all(v is not None and v > base for v in mine)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _print_summary(s: dict, output: Path) -> None:
    """What a person reads in a minute: per version the gate's metric and the online hit rate,
    the canary decision and why, what the figures mean, and where the reports are."""
    e, primary, online = s["events"], s["primary_metric"], s["online"]
    window = online.get("window", "30 min")
    baseline = next((m["offline"].get(f"baseline_{primary}") for m in s["models"].values()
                     if m["offline"].get(f"baseline_{primary}") is not None), None)
    roles = s.get("roles", {})
    say("")
    say("================ movierec demo: summary ================")
    say(f"events: {e['read']} read, {e['rejected']} rejected with a reason "
        f"({s['simulated']['corrupted']} lines were corrupted on purpose)")
    say(f"{'model':<11}{'offline ' + primary:>15}  {'publish gate':<18}{'online hit rate % [95% CI]':<28}"
        f"{'answers':>8}  role in the demo")
    for algo, m in s["models"].items():
        offline = m["offline"].get(primary) if m["offline"] else baseline
        gate = m.get("gate")
        gate_text = ("baseline" if gate is None else "passed" if gate["candidate"] else
                     "rejected, forced" if roles.get(algo, "").startswith("canary") else "rejected")
        o = online["per_version"].get(algo)
        hit = (f"{_pct(o['hit_rate']['value'])} [{_pct(o['hit_rate']['low'])}, {_pct(o['hit_rate']['high'])}]"
               if o and o["hit_rate"]["value"] is not None else "-")
        say(f"{algo:<11}{'-' if offline is None else f'{offline:.3f}':>15}  {gate_text:<18}{hit:<28}"
            f"{o['requests'] if o else 0:>8}  {roles.get(algo, '-')}")
    c = online.get("canary") or {}
    after = s.get("rollout_after", {})
    names = {m["version"]: a for a, m in s["models"].items()}
    acted = {"rollback": f"acted: {names.get(c.get('canary'))} withdrawn, {names.get(after.get('stable'))} serves "
                         "everyone", "promote": f"acted: {names.get(after.get('stable'))} is now stable"}
    say(f"canary decision: {c.get('decision', '-').upper()} {names.get(c.get('canary'), '')} vs stable "
        f"{names.get(c.get('stable'), '')}" + (f" ({acted[c['acted']]})" if c.get("acted") in acted else
                                              " (not acted: no promote or rollback yet)"))
    for reason in c.get("reasons", []):
        explain(f"  why: {reason}")
    explain(f"online hit rate: the share of answered recommendations after which the user watched at least one of "
        f"the recommended movies within {window}; the decision compares the two arms' hit rates over the same "
        "period with a sequential test that may look at the data any number of times.")
    explain(f"offline {primary} (the gate's metric): how high a model ranks, in its top 20, the movies each "
        "validation user watched or rated >= 4 later (1 = all on top); a model must beat the popularity list on "
        "it (and stay within the margin of stable) to be a candidate.")
    explain("why they can differ: offline replays a few hundred held-out users' later choices, made without seeing "
        "any list; online counts what users do right after a list, over many more answers. Small offline "
        "differences are within noise; online is the evidence a rollout acts on.")
    reports = s.get("reports", {})
    say(f"reports (open in a browser): {reports.get('offline') or '-'}")
    say(f"                             {reports.get('online') or '-'}")
    say(f"also in {output}: summary.json, demo.log (the libraries' output), server.log, events.log, store/")
    say("seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in s["stage_seconds"].items())
        + f"; total {s['seconds']:.0f} s")

