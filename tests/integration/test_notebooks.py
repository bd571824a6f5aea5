"""The notebooks execute from top to bottom on the embedded default, so they never rot.

Each runs in a fresh kernel of this test's own interpreter (the project's venv): a kernelspec is
written to a temporary Jupyter path rather than trusting whatever `python3` kernel the machine
has. The notebooks are checked in without outputs, and match what make_notebooks.py writes;
`make notebooks` (render_notebooks.py) executes them into HTML pages with their outputs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
KERNEL = "movierec-tests"
BUDGET_S = 90  # each notebook is written to take well under a minute on an idle machine


def render_notebooks():
    sys.path.insert(0, str(NOTEBOOKS_DIR))
    try:
        import render_notebooks
    finally:
        sys.path.remove(str(NOTEBOOKS_DIR))
    return render_notebooks


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL],
                   check=True, capture_output=True, timeout=60)
    return prefix / "share" / "jupyter"


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01-explore-events.ipynb", "02-compare-models.ipynb",
                                           "03-online-results.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs committed"


def test_notebooks_match_their_generator(tmp_path):
    """notebooks/make_notebooks.py is the source: the .ipynb files are what it writes."""
    sys.path.insert(0, str(NOTEBOOKS_DIR))
    try:
        import make_notebooks
    finally:
        sys.path.remove(str(NOTEBOOKS_DIR))
    for name, build in make_notebooks.NOTEBOOKS.items():
        written = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
        sources = [c.source for c in build().cells]
        assert [c.source for c in written.cells] == sources, f"{name}: run python notebooks/make_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, kernel, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernel))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=BUDGET_S, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no plot"
    page = render_notebooks().to_html(nb)  # what `make notebooks` writes: readable without a notebook app
    assert page.lstrip().lower().startswith("<!doctype html>") and page.count("data:image/png;base64,") >= len(images)
    assert seconds < BUDGET_S * 1.5, f"{path.name} took {seconds:.0f} s"
