"""Run the training pipeline on this machine with `kfp.local`, in the project's own interpreter.

`SubprocessRunner(use_venv=False)` runs every component body in a subprocess of the current
Python, so the project must be installed in it (`pip install -e .`): the bodies import
`components`. Artifacts land under `pipeline_root/<pipeline>-<timestamp>/<task>/<output>`.
kfp.local logs "Executing task ..." / "Task ... finished" through the root logger; a filter on
that logger turns those lines into timed progress callbacks, so `movierec pipeline run` can show
where the time goes, and each step's process runs under `pipelines.peak_memory`, which reports
its peak resident memory and CPU seconds (kfp.local runs one step process at a time).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.core import rollout
from components.core.model_artifact import list_versions, load_card
from components.core.store import open_store

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '?([\w.-]+)'?")
_END = re.compile(r"Task '?([\w.-]+)'? finished with status (\w+)")


@dataclass
class LocalRun:
    """What a local run did: the winner, the versions it published and the time of each step."""

    winner: str
    published: list[dict[str, Any]]
    step_seconds: dict[str, float]
    seconds: float
    pipeline_root: str
    step_peak_mb: dict[str, float] = field(default_factory=dict)  # peak resident memory of each step's process
    step_cpu_seconds: dict[str, float] = field(default_factory=dict)  # user + system CPU of each step

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner, "published": self.published, "step_seconds": self.step_seconds,
                "seconds": self.seconds, "pipeline_root": self.pipeline_root, "step_peak_mb": self.step_peak_mb,
                "step_cpu_seconds": self.step_cpu_seconds}


@dataclass
class _StepTimer(logging.Filter):
    """Times kfp.local's tasks from its own log records (it logs through the root logger)."""

    progress: Callable[[str], None]
    names: dict[str, str] = field(default_factory=dict)      # kfp.local task name -> display name
    started: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    last_peak_mb: float | None = None   # of the step process reaped last (set by `_measured_steps`)
    last_cpu_seconds: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI.sub("", record.getMessage())
        if m := _START.search(text):
            name = self.names.get(m.group(1), m.group(1))
            self.started[name] = time.perf_counter()
            self.last_peak_mb = self.last_cpu_seconds = None
            self.progress(f"[{len(self.seconds) + 1}] {name} ...")
        elif m := _END.search(text):
            name = self.names.get(m.group(1), m.group(1))
            took = time.perf_counter() - self.started.get(name, time.perf_counter())
            self.seconds[name] = round(took, 2)
            peak = ""
            if self.last_peak_mb is not None:
                self.peak_mb[name], self.cpu_seconds[name] = self.last_peak_mb, self.last_cpu_seconds
                peak = f" ({self.last_cpu_seconds:.1f} s CPU), peak memory {self.last_peak_mb:.0f} MB"
            self.progress(f"    {name}: {m.group(2)} in {took:.1f} s{peak}")
        return True


@contextmanager
def _measured_steps(timer: _StepTimer) -> Iterator[None]:
    """Run kfp.local's step processes as it does, each under `pipelines.peak_memory`, so that the
    peak resident memory of the step's own process reaches `timer`. If kfp.local no longer has
    the hook, runs go on unmeasured."""
    from kfp.local import subprocess_task_handler as handler

    original = getattr(handler, "run_local_subprocess", None)

    def run_local_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        env = {**os.environ, **env_vars} if env_vars else None
        fd, peak_file = tempfile.mkstemp(prefix="movierec-step-peak-")
        os.close(fd)
        try:
            command = [sys.executable, "-m", "pipelines.peak_memory", peak_file, *full_command]
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  bufsize=1, env=env) as process:
                for line in iter(process.stdout.readline, ""):
                    print(line, end="")
                print("\n")
                code = process.wait()
            figures = Path(peak_file).read_text().split()
            if len(figures) == 2:
                timer.last_peak_mb, timer.last_cpu_seconds = round(int(figures[0]) / 1024, 1), float(figures[1])
            return code
        finally:
            os.unlink(peak_file)

    if original is None:
        yield
        return
    handler.run_local_subprocess = run_local_subprocess
    try:
        yield
    finally:
        handler.run_local_subprocess = original


def run_local(source: str, store: str, pipeline_root: str, params: dict | None = None, *, deploy: str = "none",
              canary_percent: float = 10.0, force_deploy: bool = False, group: str = "movierec-ingest",
              progress: Callable[[str], None] | None = None, quiet: bool = True) -> LocalRun:
    """Run `movierec-training` end to end with kfp.local; return the published versions and step times.

    `store` should be absolute (a path or s3:// URI): the steps run as subprocesses. `progress`
    gets one line per step start and end."""
    from kfp import local

    from components.core.params import complete
    from pipelines.training_pipeline import pipeline_for

    training_pipeline = pipeline_for(complete(params)["train"]["algorithms"])
    target = open_store(store)
    before = set(list_versions(target))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(pipeline_root).resolve()))
    names = {key: task.task_info.name for key, task in training_pipeline.pipeline_spec.root.dag.tasks.items()}
    timer = _StepTimer(progress or (lambda line: None), names)
    root = logging.getLogger()
    root.addFilter(timer)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(), _measured_steps(timer):
            # kfp.local warns that base_image and display names are ignored locally: known, by design.
            warnings.filterwarnings("ignore", message=".*base image.*")
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            task = training_pipeline(source=source, store=store, params=json.dumps(params or {}), group=group,
                                     deploy=deploy, canary_percent=float(canary_percent), force_deploy=force_deploy)
    finally:
        root.removeFilter(timer)
    seconds = round(time.perf_counter() - started, 2)
    published, state = [], rollout.load(target)
    for version in sorted(set(list_versions(target)) - before):
        card = load_card(target, version)
        published.append({"version": version, "algorithm": card.algorithm, "candidate": card.gate.get("candidate"),
                          "deployed": rollout.deployment_of(state, version), "reasons": card.gate.get("reasons", []),
                          "metrics": card.metrics})
    return LocalRun(winner=str(task.output or ""), published=published, step_seconds=dict(timer.seconds),
                    seconds=seconds, pipeline_root=str(Path(pipeline_root).resolve()),
                    step_peak_mb=dict(timer.peak_mb), step_cpu_seconds=dict(timer.cpu_seconds))


def copy_offline_report(pipeline_root: str | Path, to: str | Path) -> Path | None:
    """Copy the newest run's side-by-side offline report to `to` (an `.html` path a browser opens as
    a page: the artifact itself is an extension-less file). None if no run wrote one."""
    import shutil

    found = sorted(Path(pipeline_root).glob("movierec-training-*/compare/report"))
    if not found:
        return None
    Path(to).parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(found[-1], to))
