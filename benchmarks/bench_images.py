"""The images: size, build time (cold and warm cache), start time to ready, and the predictor's
latency at a fixed rate inside the container against the same server outside it.

    python -m benchmarks.bench_images [--rate 1000] [--seconds 8] [--users 100000]

Starts its own `dockerd` (tests/servers/docker.py, as the integration tests do), builds with
`make images` on the base made from Debian packages, and writes benchmarks/results/images.json:
- `build_seconds`: `make images` with no layer cache (`--no-cache`: every wheel installed again),
  again with nothing changed (warm), and after a code change (only the project's wheel reinstalled);
  `wheels_seconds`: `make wheels` with the wheelhouse cached (its cold build is the pip download
  and, for sdists, compile time, and runs once per lock);
- `size_bytes` of each image and of the base, and `baseline_size_bytes`: one image with the
  single dependency set of the first version's images (both groups, `make wheels`' `all`);
- `ready_seconds`: `docker run` to /v2/health/ready answering 200 (predictor), `docker run` to exit
  of `movierec --help` (component image); the same predictor started outside the container;
- `latency`: the open-loop generator of bench_serving at --rate against the predictor in the
  container and outside it (same store, same flags), three runs each, interleaved, the median
  run by p99 reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_serving import build_store, fixed_rate, start_server  # noqa: E402
from predictor.supervisor import free_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "images.json"
PREFIX = "movierec-bench"


def make_images(engine, base: str, tag: str, *extra: str) -> float:
    env = {**os.environ, **engine.env(), "DOCKER_BUILDKIT": "0"}
    t0 = time.perf_counter()
    subprocess.run(["make", "--no-print-directory", "images", f"BASE_IMAGE={base}", f"IMAGE_PREFIX={PREFIX}",
                    f"IMAGE_TAG={tag}", *extra], cwd=ROOT, env=env, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - t0, 1)


def size(engine, ref: str) -> int:
    return int(engine.docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def wait_http(url: str, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready within {timeout} s")


def start_container(engine, image: str, store: Path, port: int, workers: int) -> tuple[str, float]:
    name = f"movierec-bench-{port}"
    t0 = time.perf_counter()
    engine.docker("run", "--detach", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
                  "--volume", f"{store}:{store}:ro", "--env", "MOVIEREC_LOG_LEVEL=WARNING", image,
                  "--store", str(store), "--http_port", str(port), "--bind_host", "127.0.0.1",
                  "--workers", str(workers), "--poll_seconds", "2")
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    except TimeoutError:
        logs = engine.docker("logs", name, check=False)
        engine.docker("rm", "--force", name, check=False)
        raise TimeoutError(f"the predictor container did not get ready:\n{(logs.stdout + logs.stderr)[-2000:]}") from None
    return name, round(time.perf_counter() - t0, 2)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="Fixed request rate (req/s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of each fixed-rate run")
    parser.add_argument("--users", type=int, default=100_000, help="Users per model")
    parser.add_argument("--movies", type=int, default=10_000, help="Movies per model")
    parser.add_argument("--workers", type=int, default=2, help="Predictor workers, in and out of the container")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOVIEREC_LOG_LEVEL", "WARNING")

    from tests.servers.docker import DockerEngine, base_image

    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_average_1m_at_start": round(os.getloadavg()[0], 2),
                                "note": "a shared 2-core machine: other processes compete for the CPU"}}
    engine = DockerEngine().start()
    try:
        t0 = time.perf_counter()
        base = base_image(engine)
        result["base_image"] = {"ref": base, "seconds": round(time.perf_counter() - t0, 1),
                                "size_bytes": size(engine, base)}
        t0 = time.perf_counter()
        subprocess.run(["make", "--no-print-directory", "wheels"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        result["wheels_seconds_cached_wheelhouse"] = round(time.perf_counter() - t0, 1)
        build = {"cold_no_layer_cache": make_images(engine, base, "bench", "DOCKER_BUILD_FLAGS=--no-cache"),
                 "warm_nothing_changed": make_images(engine, base, "bench")}
        stamp = ROOT / "components" / "__init__.py"
        original = stamp.read_text()
        try:  # a code change: the project's wheel differs, the dependency layer stays cached
            stamp.write_text(original + f"\n# bench {time.time()}\n")
            build["warm_code_changed"] = make_images(engine, base, "bench-code")
        finally:
            stamp.write_text(original)
        result["build_seconds"] = build
        print(json.dumps(build), flush=True)
        result["size_bytes"] = {name: size(engine, f"{PREFIX}/{name}:bench") for name in ("components", "predictor")}
        # The single set: both groups' wheels (`make wheels`' `all`) in one image, the predictor's Dockerfile.
        all_wheels = max((Path.home() / ".cache" / "movierec" / "wheels").glob("*/all"),
                         key=lambda p: p.stat().st_mtime)
        context = ROOT / "build" / "images" / "baseline"
        subprocess.run(["rm", "-rf", str(context)], check=True)
        context.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(all_wheels), str(context / "deps")], check=True)
        for wheel in (ROOT / "build" / "images" / "project").glob("movierec-*.whl"):
            subprocess.run(["cp", str(wheel), str(context)], check=True)
        t0 = time.perf_counter()
        engine.docker("build", "--file", str(ROOT / "images" / "predictor.Dockerfile"), "--build-arg",
                      f"BASE_IMAGE={base}", "--tag", f"{PREFIX}/single:baseline", str(context), timeout=3600,
                      env={**os.environ, "DOCKER_BUILDKIT": "0"})
        build["single_set_image"] = round(time.perf_counter() - t0, 1)
        result["baseline_size_bytes"] = size(engine, f"{PREFIX}/single:baseline")
        result["baseline"] = ("both images' groups (pipeline, serve) in one image; the first version's single set "
                              "also held dvc[s3], kserve[storage], httpx and psutil")
        print(json.dumps({k: result[k] for k in ("size_bytes", "baseline_size_bytes")}), flush=True)

        t0 = time.perf_counter()
        engine.docker("run", "--rm", "--network", "host", "--read-only", f"{PREFIX}/components:bench",
                      "movierec", "--help")
        ready = {"components_help": round(time.perf_counter() - t0, 2)}

        cache = Path(os.environ.get("MOVIEREC_BENCH_CACHE", tempfile.gettempdir())) / "movierec-bench-images"
        store = build_store(cache / f"store-{args.users}x{args.movies}", args.users, args.movies, 32)
        store_root = Path(store.root).resolve()
        subprocess.run(["chmod", "-R", "a+rX", str(store_root)], check=True)  # the image's user reads it
        port_in, port_out = free_port(), free_port()
        name, ready["predictor_container"] = start_container(engine, f"{PREFIX}/predictor:bench", store_root,
                                                             port_in, args.workers)
        tmp = Path(tempfile.mkdtemp(prefix="movierec-bench-images-"))
        proc, log, ready["predictor_host"] = start_server(store, port_out, args.workers, tmp, 2.0)
        result["ready_seconds"] = ready
        runs: dict[str, list] = {"container": [], "host": []}
        try:
            for _ in range(3):
                for where, port in (("container", port_in), ("host", port_out)):
                    runs[where].append(fixed_rate(port, args.rate, args.seconds, args.users))
        finally:
            engine.docker("rm", "--force", name, check=False)
            from predictor.supervisor import stop_instance

            stop_instance(proc)
            log.close()
        result["latency"] = {where: {"median_run_by_p99": sorted(r, key=lambda x: x["p99_ms"])[1], "runs": r}
                             for where, r in runs.items()}
        result["latency"]["setup"] = {"rate": args.rate, "seconds": args.seconds, "users": args.users,
                                      "movies": args.movies, "workers": args.workers}
    finally:
        engine.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("build_seconds", "size_bytes", "baseline_size_bytes", "ready_seconds")
                      if k in result}, indent=2))
    for where in ("container", "host"):
        m = result["latency"][where]["median_run_by_p99"]
        print(f"{where}: p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms at {m.get('achieved_rate', args.rate)} req/s")
    return result


if __name__ == "__main__":
    main()
