"""The online report as a person sees it: a real browser (headless Chromium) renders report.html
to a PNG, which must show the page (tables and the coloured plot), not an empty page or the
page's source. The same check on the raw source (the page served as text) must fail, so the
check itself is shown to tell the two apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.online.report import write_report
from tests.unit.online.test_report import _result, _series

pytestmark = pytest.mark.integration


def screenshot(page: Path, png: Path, tmp_path: Path) -> Image.Image:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium not found: install it (make test-tools does, from Debian's package)"
    profile = tmp_path / f"profile-{png.stem}"
    profile.mkdir()
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--window-size=1200,1600", f"--screenshot={png}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    return Image.open(png).convert("RGB")


def rendered_page(image: Image.Image) -> tuple[float, int]:
    """(share of non-white pixels, count of strongly coloured pixels): text alone is black or grey,
    the plots' lines are coloured."""
    pixels = np.asarray(image, dtype=np.int16).reshape(-1, 3)
    inked = float((pixels.min(axis=1) < 235).mean())
    coloured = int((pixels.max(axis=1) - pixels.min(axis=1) > 80).sum())
    return inked, coloured


def looks_like_the_report(image: Image.Image) -> bool:
    inked, coloured = rendered_page(image)
    return inked > 0.01 and coloured > 2000


def test_online_report_renders_as_a_page_in_a_browser(tmp_path):
    report = write_report(_result(), _series(), tmp_path / "report")
    page = screenshot(report / "report.html", tmp_path / "page.png", tmp_path)
    assert looks_like_the_report(page), rendered_page(page)

    source = report / "report-source.txt"  # the same bytes, shown as text: what a browser shows for a
    source.write_bytes((report / "report.html").read_bytes())  # file without .html
    raw = screenshot(source, tmp_path / "source.png", tmp_path)
    assert not looks_like_the_report(raw), rendered_page(raw)

    empty = tmp_path / "empty.html"
    empty.write_text("<!doctype html><html><body></body></html>")
    assert not looks_like_the_report(screenshot(empty, tmp_path / "empty.png", tmp_path))
