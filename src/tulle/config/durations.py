"""Durations as manifests write them: ``250ms``, ``10s``, ``5m``, ``1h``, ``1m30s``.

Manifests say how long in words a person can read at a glance, the way Go's
``time.ParseDuration`` and Kubernetes do. Inside Tulle a duration is a plain float of
seconds, so nothing on the request path parses a string. Parsing sums the parts as
exact fractions and converts once, so ``format_duration`` and ``parse_duration``
round-trip exactly.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

# Seconds per unit. Longest unit names first in the pattern so "ms" is not read as "m".
UNITS: dict[str, Fraction] = {
    "h": Fraction(3600),
    "m": Fraction(60),
    "s": Fraction(1),
    "ms": Fraction(1, 1000),
    "us": Fraction(1, 1_000_000),
}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|us|h|m|s)")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|us|h|m|s))+")

DURATION_EXAMPLES = "a duration like 250ms, 10s or 5m"


def parse_duration(text: str) -> float:
    """Return the seconds in ``text`` (``"1m30s"`` -> ``90.0``); raise ValueError if malformed."""
    if not isinstance(text, str):
        raise ValueError(f"expected {DURATION_EXAMPLES}, got {text!r}")
    candidate = text.strip()
    if candidate == "0":
        return 0.0
    if not _WHOLE.fullmatch(candidate):
        raise ValueError(f'expected {DURATION_EXAMPLES}, got "{text}"')
    total = Fraction(0)
    for number, unit in _PART.findall(candidate):
        total += Fraction(number) * UNITS[unit]
    return float(total)


def format_duration(seconds: float) -> str:
    """Render seconds the way a person would write them: ``90.0`` -> ``"1m30s"``.

    Whole microseconds render as units (``1h``, ``1m30s``, ``250ms``, ``1s500ms``);
    anything finer falls back to decimal seconds, which still parses back exactly.
    """
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds!r}")
    if seconds == 0:
        return "0s"
    micros = round(Fraction(seconds) * 1_000_000)
    if float(Fraction(micros, 1_000_000)) != seconds:
        return f"{Decimal(repr(seconds)):f}s"
    parts = []
    for unit, size in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000),
                       ("ms", 1_000), ("us", 1)):
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
