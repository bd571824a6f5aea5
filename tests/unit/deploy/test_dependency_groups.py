"""Each image's dependency group provides every library its code imports, and no more is needed.

The predictor image installs `.[serve]`, the component image `.[pipeline]` (pyproject.toml). The
import closure of each entry point (every import, also those inside functions, followed through
the project's own modules) is mapped to the distributions providing it, and each of those must be
reachable from the group's requirements (their own dependencies included). A new import of pandas
in the predictor, or of kserve in a step, fails here instead of in a pod.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
import tomllib
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("components", "pipelines", "predictor", "simulator", "movierec")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from components.core import rollout`
    return names


def third_party_closure(entry_points: list[str]) -> set[str]:
    """Top-level names of the non-project, non-stdlib modules reachable from the entry points."""
    todo, seen, outside = list(entry_points), set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        if path is None:
            continue
        for name in imported(path):
            top = name.split(".")[0]
            if top in PACKAGES:
                todo.append(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.add(top)
    return outside


@cache
def requirements_closure(group: str) -> frozenset[str]:
    """Distributions installed by the base dependencies plus one optional group, transitively."""
    todo = [Requirement(r) for r in PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"][group]]
    found: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == "movierec":
            todo += [Requirement(r) for extra in req.extras for r in PYPROJECT["optional-dependencies"][extra]]
            continue
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in found:
            continue
        found |= {key, name}
        for text in md.requires(req.name) or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(dep)
    return frozenset(n for n in found if "[" not in n)


def missing(group: str, entry_points: list[str]) -> dict[str, list[str]]:
    providers = md.packages_distributions()
    provided = requirements_closure(group)
    gaps = {}
    for top in sorted(third_party_closure(entry_points)):
        dists = [canonicalize_name(d) for d in providers.get(top, [top])]
        if not any(d in provided for d in dists):
            gaps[top] = dists
    return gaps


def test_serve_group_provides_everything_the_predictor_imports():
    assert missing("serve", ["predictor.__main__"]) == {}


def test_pipeline_group_provides_every_step_and_the_pipeline_commands():
    assert missing("pipeline", ["components.steps", "components.cli", "pipelines.cli"]) == {}


def test_serve_group_leaves_out_the_training_stack():
    provided = requirements_closure("serve")  # (pandas comes with kserve itself)
    assert not {"kfp", "scikit-surprise", "scipy", "pyarrow", "matplotlib", "dvc", "boto3"} & provided


def test_check_notices_an_import_the_group_lacks():
    # the component steps import kfp and surprise: the serve group must not pass for them
    assert {"kfp", "surprise"} <= set(missing("serve", ["components.steps"]))


def test_test_group_holds_both_image_groups():
    assert requirements_closure("serve") | requirements_closure("pipeline") <= requirements_closure("test")
