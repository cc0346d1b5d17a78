"""Tests that drive real programs (HAProxy, nginx, wrk, prometheus, chromium, a
Kubernetes API server): skip locally when one is missing, fail in CI (``CI=true``),
where a skip would hide a missing install step."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from bench.tools import missing_tools


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_outside_ci(message: str) -> NoReturn:
    """Fail in CI; skip on a developer's machine."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)  # outside CI only: in CI the line above failed the test


def require_tools(names: tuple[str, ...] | list[str]) -> None:
    missing = missing_tools(list(names))
    if missing:
        skip_outside_ci(f"tools not installed: {', '.join(missing)} (make system-deps)")
