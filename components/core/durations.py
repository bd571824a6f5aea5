"""The one rule for a duration given as text (a flag, a setting, a pipeline parameter).

A duration is a number followed by a unit: `500ms`, `45s`, `30m`, `2h`, `1d`, `1w`, or several
of them combined, largest first (`1h30m`). A bare number is seconds, as for every flag of the
project whose name ends in a unit-less seconds value (`--interval`, `--linger`). Anything else
is a `UserError` that names the accepted forms.
"""

from __future__ import annotations

import re
from datetime import timedelta

from components.core.errors import UserError

FORMS = "a number with a unit (500ms, 45s, 30m, 2h, 1d, 1w), combined like 1h30m; a bare number is seconds"
UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)"
_WHOLE = re.compile(rf"(?:{_PART})+")


def parse_duration(text: str | float | timedelta) -> timedelta:
    """`text` as a timedelta, by the rule above; a `UserError` naming the accepted forms otherwise."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise UserError(f"not a duration: {text!r} is negative (use {FORMS})")
        return timedelta(seconds=text)
    value = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return timedelta(seconds=float(value))
    if not _WHOLE.fullmatch(value):
        raise UserError(f"not a duration: {text!r} (use {FORMS})")
    parts = re.findall(_PART, value)
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units) or units != sorted(units, key=lambda u: -UNITS[u]):
        raise UserError(f"not a duration: {text!r}: give each unit once, largest first (use {FORMS})")
    return timedelta(seconds=sum(float(number) * UNITS[unit] for number, unit in parts))

