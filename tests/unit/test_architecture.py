"""The import rule of the house, enforced: imports point one way.

    components.core  <-  components.ingest, components.training  <-  components.online
                     <-  components.steps, components.cli (the top of `components`)
    components       <-  pipelines, predictor
    everything       <-  movierec (the CLI and the demo), benchmarks, tests

`core` holds the contracts every part shares and imports no sibling; `simulator` (the stand-in
for the streaming service) imports only `components.core` and is imported by nobody but the
demo, the benchmarks and the tests. The rule is written in `components/__init__.py` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "pipelines", "predictor", "simulator", "movierec")
SUBPACKAGES = ("core", "ingest", "training", "online")

# unit -> the units it may import (besides itself)
ALLOWED = {
    "components.core": set(),
    "components.ingest": {"components.core"},
    "components.training": {"components.core"},
    "components.online": {"components.core", "components.training"},
    "components.steps": {"components.core", "components.ingest", "components.training", "components.online"},
    "components.cli": {"components.core", "components.ingest", "components.training", "components.online"},
    "pipelines": {"components.core", "components.steps"},
    "predictor": {"components.core"},
    "simulator": {"components.core"},
    "movierec": {"components.core", "components.ingest", "components.training", "components.online",
                 "components.cli", "components.steps", "pipelines", "predictor", "simulator"},
}


def unit_of(module: str) -> str:
    parts = [part for part in module.split(".") if part != "__init__"]
    if parts[0] == "components" and len(parts) > 1:
        return f"components.{parts[1]}"
    return parts[0]


def imports(path: Path, packages: tuple[str, ...] = PACKAGES) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "components":  # `from components import core` names a subpackage
                found += [(node.lineno, f"components.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in packages]


def project_modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_components_has_one_subpackage_per_concern():
    assert {p.name for p in (ROOT / "components").iterdir() if (p / "__init__.py").exists()} == set(SUBPACKAGES)
    loose = {p.stem for p in (ROOT / "components").glob("*.py")} - {"__init__"}
    assert loose == {"steps", "cli"}, "only the Kubeflow components and the CLI sit on top of the subpackages"


def test_imports_point_one_way():
    violations = []
    for path, module in project_modules():
        source = unit_of(module)
        if source == "components":  # the package's docstring
            continue
        assert source in ALLOWED, f"{module}: no rule for {source}; add it to ALLOWED and components/__init__.py"
        for line, name in imports(path):
            target = unit_of(name)
            if target != source and target != "components" and target not in ALLOWED[source]:
                violations.append(f"{path.relative_to(ROOT)}:{line} {source} imports {name}")
    assert not violations, "imports against the rule:\n" + "\n".join(violations)


def test_the_check_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from components.online.canary import analyse\n")
    assert [unit_of(n) for _, n in imports(bad)] == ["components.online"]
    assert "components.online" not in ALLOWED["components.core"]


# -- KServe through its public API only ---------------------------------------------------------------
def private_kserve_uses(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """Every use of a private KServe name in `source`: `from kserve... import _x`, `import kserve._x`,
    and attribute access `._x` on a name bound to a kserve module or to an object made from a kserve name
    (a class instantiated, a function's result)."""
    tree = ast.parse(source, filename=filename)
    kserve_names: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kserve":
                    if any(part.startswith("_") for part in alias.name.split(".")):
                        found.append((node.lineno, alias.name))
                    kserve_names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kserve":
            if any(part.startswith("_") for part in node.module.split(".")):
                found.append((node.lineno, node.module))
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
                kserve_names.add(alias.asname or alias.name)

    def rooted_in_kserve(expr: ast.AST) -> bool:
        while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
            expr = expr.func if isinstance(expr, ast.Call) else expr.value
        return isinstance(expr, ast.Name) and expr.id in kserve_names

    changed = True
    while changed:  # names assigned from kserve objects are kserve objects too (x = ModelServer(...))
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and rooted_in_kserve(node.value):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id not in kserve_names:
                        kserve_names.add(target.id)
                        changed = True
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and rooted_in_kserve(node.value)):
            found.append((node.lineno, node.attr))
    return found


def test_no_module_uses_a_private_kserve_name():
    violations = [f"{path.relative_to(ROOT)}:{line} {name}"
                  for path, _ in project_modules() for line, name in private_kserve_uses(path.read_text(), str(path))]
    assert not violations, "private KServe names (an upgrade breaks them silently):\n" + "\n".join(violations)


def test_the_private_kserve_check_sees_each_kind_of_use():
    old_worker = (
        "from kserve import ModelServer\n"
        "def run(models):\n"
        "    model_server = ModelServer(http_port=1)\n"
        "    model_server._register_and_check_atleast_one_model_is_ready(models)\n")
    assert private_kserve_uses(old_worker) == [(4, "_register_and_check_atleast_one_model_is_ready")]
    assert private_kserve_uses("from kserve.model_server import _x\n") == [(1, "kserve.model_server._x")]
    assert private_kserve_uses("import kserve.protocol._grpc as g\n") == [(1, "kserve.protocol._grpc")]
    assert private_kserve_uses("import kserve\nkserve.model_server.app._secret\n") == [(2, "_secret")]
    assert private_kserve_uses("from kserve import model_server\nmodel_server.app.router.__len__\n") == []
    assert private_kserve_uses("class A:\n    def f(self):\n        return self._own\n") == []


def test_every_project_import_names_a_module_that_exists():
    """Deferred imports (inside a function, as the benchmarks do) fail only when that function
    runs; a module moved without its importers updated is caught here instead."""
    ours = (*PACKAGES, "benchmarks", "tests")
    missing = []
    for folder in ours:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, name in imports(path, ours):
                parts = name.split(".")
                module_file = ROOT.joinpath(*parts).with_suffix(".py")
                package_init = ROOT.joinpath(*parts, "__init__.py")
                if not (module_file.exists() or package_init.exists()):
                    missing.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not missing, "\n".join(missing)
