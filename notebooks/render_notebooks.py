"""Executes the notebooks of this folder and writes them as HTML pages with their outputs:
`python notebooks/render_notebooks.py [OUTPUT_DIR]` (`make notebooks`: build/notebooks/).

The notebooks are committed without outputs (their code is reviewed as code); this is how to read
them with their tables and plots in any browser, without a notebook app. Each runs in a kernel of
this interpreter (the project's venv), through a kernelspec written to a temporary Jupyter path,
never whatever `python3` kernel the machine has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
KERNEL = "movierec-notebooks"
TIMEOUT_S = 300  # per cell


def kernel_path() -> str:
    """A Jupyter path holding a kernelspec for this interpreter."""
    prefix = tempfile.mkdtemp(prefix="movierec-jupyter-")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", prefix, "--name", KERNEL],
                   check=True, capture_output=True, timeout=60)
    return str(Path(prefix) / "share" / "jupyter")


def execute(path: Path, jupyter_path: str) -> nbformat.NotebookNode:
    """Run the notebook top to bottom in its own folder; return it with its outputs."""
    from nbclient import NotebookClient

    os.environ["JUPYTER_PATH"] = jupyter_path
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=TIMEOUT_S, kernel_name=KERNEL,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def to_html(nb: nbformat.NotebookNode) -> str:
    """One self-contained page: the plots are inline PNGs."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else HERE.parent / "build" / "notebooks"
    output.mkdir(parents=True, exist_ok=True)
    jupyter_path = kernel_path()
    for path in sorted(HERE.glob("*.ipynb")):
        page = output / path.with_suffix(".html").name
        page.write_text(to_html(execute(path, jupyter_path)))
        print(f"{path.name} -> {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
