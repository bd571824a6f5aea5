"""Run every benchmark: `python -m benchmarks [name ...]` calls main() of each bench_<name>.py.

A benchmark too long for the suite names the arguments it runs with here in `SUITE_ARGV`
(bench_scale: `--quick`; its course-scale run is `python -m benchmarks.bench_scale`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(names: list[str]) -> int:
    found = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    failed = []
    for name in names or found:
        if name not in found:
            print(f"no benchmark {name!r}; have: {', '.join(found)}", file=sys.stderr)
            return 2
        print(f"== bench_{name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            module.main(list(getattr(module, "SUITE_ARGV", [])))
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"bench_{name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
