"""Degrading endpoint under open-loop load: the same run as ``degrading_endpoint``,
but the load comes from ``bench/fixed_rate.py`` — each request sent on a fixed
schedule whatever happened to earlier ones — instead of hey.

Three backends (``bench/backends_slow.py``) answer after 1 ms; the third's delay
climbs linearly to 40 ms over the run. hey's workers fire in step (every worker
ticks at the same moments), so a balancer sees bursts of requests placed within a
couple of milliseconds; production traffic is closer to evenly spread arrivals,
which is what this scenario sends. Comparing the two shows how much of a
balancer's behaviour comes from the shape of the load.
"""

from __future__ import annotations

from bench.harness import Harness
from bench.report import Report
from bench.scenarios import degrading_endpoint

DESCRIPTION = "one endpoint degrades from 1 to 40 ms, under open-loop load: p99 over time"
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "tulle")


def run(harness: Harness, quick: bool) -> Report:
    return degrading_endpoint.measure(
        harness, quick, degrading_endpoint.open_loop_offsets, "degrading_open_loop",
        "open-loop",
    )
