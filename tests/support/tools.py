"""Tests that drive real programs (HAProxy, nginx, wrk, prometheus…): skip locally
when one is missing, fail in CI (``CI=true``), where a skip would hide a missing
install step."""

from __future__ import annotations

import os

import pytest

from bench.tools import missing_tools


def require_tools(names: tuple[str, ...] | list[str]) -> None:
    missing = missing_tools(list(names))
    if not missing:
        return
    message = f"tools not installed: {', '.join(missing)} (make system-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
