"""`movierec simulate`: the streaming-service stand-in."""

from __future__ import annotations


def simulate() -> None:
    """Simulate the streaming service's users and write their events to an event log."""
