"""The benchmark scenarios, found by name in :data:`SCENARIOS`.

A scenario is a module with the same small interface (:class:`Scenario`):
``DESCRIPTION`` (one line, shown by ``python -m bench --list``), ``TOOLS`` (the
programs it needs, checked before anything starts) and
``run(harness, quick) -> Report``. Adding a scenario means adding a module and one
line to the table below. Modules are imported only when their scenario runs.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from bench.harness import Harness
from bench.report import Report

# name -> module implementing it.
SCENARIOS: dict[str, str] = {
    "baseline": "bench.scenarios.baseline",
    "slow_endpoint": "bench.scenarios.slow_endpoint",
    "degrading_endpoint": "bench.scenarios.degrading_endpoint",
    "degrading_open_loop": "bench.scenarios.degrading_open_loop",
    "failover": "bench.scenarios.failover",
    "frozen_endpoint": "bench.scenarios.frozen_endpoint",
    "control_plane": "bench.scenarios.control_plane",
    "fuzz": "bench.scenarios.fuzz",
    "soak": "bench.scenarios.soak",
    "balancing": "bench.scenarios.balancing",
    "h2": "bench.scenarios.h2",
    "mtls": "bench.scenarios.mtls",
}


class Scenario(Protocol):
    DESCRIPTION: str
    TOOLS: tuple[str, ...]

    def run(self, harness: Harness, quick: bool) -> Report: ...


def load_scenario(name: str) -> Scenario:
    """The scenario module called ``name``; KeyError names the known ones."""
    try:
        module_name = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    module: Scenario = importlib.import_module(module_name)  # type: ignore[assignment]
    return module
