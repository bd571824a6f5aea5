"""`movierec demo`: the whole loop on one machine."""

from __future__ import annotations


def demo() -> None:
    """Run the whole loop on the embedded default and write demo-output/summary.json."""
