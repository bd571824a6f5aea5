"""Install-size benchmark: each image's dependency group against the single set both used to install.

For every group (`serve`, `pipeline`) and for the baseline (`single`: the one dependency list
both images installed before the groups existed, `FIRST_VERSION` below) a fresh venv is created in a temporary folder and the project is installed
into it with `constraints.txt`, the way the images do. The result is the venv's size on disk
(`du`), its number of installed distributions, and whether the image's entry point imports:
`python -m predictor --help` for `serve`, every step body's imports for `pipeline`.

    python -m benchmarks.bench_install_size [--only serve]   # writes benchmarks/results/install_size.json

It needs the package index (or a warm pip cache) and takes minutes per venv.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "install_size.json"
SOURCES = ("pyproject.toml", "constraints.txt", "README.md", "components", "pipelines", "predictor", "simulator",
           "movierec")
STEP_IMPORTS = """
import ast, inspect, textwrap
from components import steps
for name in ("ingest", "preprocess", "train", "evaluate", "publish", "compare", "release", "online_eval"):
    tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(steps, name).python_func)))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([node], []), name, "exec"), {})
"""
FIRST_VERSION = ["kfp==2.17.3", "kfp-kubernetes==2.17.3", "kserve[storage]==0.21.0", "kafka-python==3.0.12",
                 "crc32c==2.9.post0", "scikit-surprise==1.1.5", "dvc[s3]==3.67.1", "minio==7.2.20",
                 "prometheus-client==0.26.0", "numpy==2.4.6", "scipy==1.17.1", "pandas==2.3.3", "pyarrow==26.0.1",
                 "typer==0.29.2", "matplotlib==3.11.2", "pyyaml==6.0.4", "httpx==0.28.1", "uvloop==0.23.0",
                 "psutil==5.9.8"]
CHECKS = {"serve": {"python -m predictor --help": ["-m", "predictor", "--help"]},
          "pipeline": {"every step body's imports": ["-c", STEP_IMPORTS]}, "single": {}}


def disk_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def measure(group: str, workdir: Path) -> dict:
    src = workdir / "src"
    if not src.exists():
        src.mkdir()
        for name in SOURCES:
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    venv = workdir / f"venv-{group}"
    targets = [str(src), *FIRST_VERSION] if group == "single" else [f"{src}[{group}]"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(src / "constraints.txt"), *targets],
                   check=True, timeout=1800)
    seconds = time.perf_counter() - started
    dists = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                           check=True).stdout
    checks = {name: subprocess.run([str(python), *command], capture_output=True, cwd=workdir,
                                   timeout=300).returncode == 0 for name, command in CHECKS[group].items()}
    return {"install": " ".join(t.replace(str(src), ".") for t in targets), "bytes": disk_bytes(venv),
            "megabytes": round(disk_bytes(venv) / 2**20), "distributions": len(json.loads(dists)),
            "install_seconds": round(seconds, 1), "entry_point_imports": checks}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=["serve", "pipeline", "single"],
                        help="measure only this venv (repeatable)")
    args = parser.parse_args(argv)
    groups = args.only or ["serve", "pipeline", "single"]
    with tempfile.TemporaryDirectory(prefix="movierec-bench-install-") as tmp:
        figures = {group: measure(group, Path(tmp)) for group in groups}
    result = {"benchmark": "install_size", "python": platform.python_version(), "machine": platform.machine(),
              "venvs": figures, "baseline": "single: the first version's one dependency list, used by both images"}
    if {"serve", "single"} <= figures.keys():
        result["serve_vs_single"] = round(figures["serve"]["bytes"] / figures["single"]["bytes"], 3)
    if {"pipeline", "single"} <= figures.keys():
        result["pipeline_vs_single"] = round(figures["pipeline"]["bytes"] / figures["single"]["bytes"], 3)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
