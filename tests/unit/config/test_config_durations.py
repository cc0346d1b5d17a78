"""Durations: the accepted forms, the errors, and exact round-trips through rendering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tulle.config import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s4ms", 3723.004),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("0s", 0.0),
        ("100us", 0.0001),
    ],
)
def test_parses(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "10", "10 s", "-1s", "1d", "s", "1s2", "1.s"])
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like 250ms, 10s or 5m"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250ms"), (10.0, "10s"), (60.0, "1m"), (90.0, "1m30s"), (3600.0, "1h"),
     (1.5, "1s500ms"), (0.0, "0s")],
)
def test_renders(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_whole_microseconds_round_trip(micros: int) -> None:
    seconds = micros / 1_000_000
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_any_float_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
