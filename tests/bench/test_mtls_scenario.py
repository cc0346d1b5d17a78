"""The mtls scenario (marked ``bench``), run quickly end to end: two Tulle proxies
plaintext, with mTLS, and with mTLS and inbound policy; two HAProxy instances plaintext
and with ``ssl`` on both sides; and direct, all answering through both hops with no
errors, and the policy decisions timed in-process (about 40 s). Like
``test_harness.py`` it skips when a tool is missing, except in CI (``CI=true``), where
it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scenarios import load_scenario, mtls
from tests.support.tools import require_tools


@pytest.mark.bench
def test_mtls_quick_measures_every_pair_without_errors(tmp_path: Path) -> None:
    from bench.__main__ import run_scenario

    require_tools(load_scenario("mtls").TOOLS)
    report, written = run_scenario("mtls", quick=True, results_dir=tmp_path)

    throughput = report.table("Throughput and CPU through two proxies (wrk -t1 -c32)")
    assert set(throughput.column("errors").items()) == {(pair, "0") for pair in mtls.PAIRS}
    for pair, rps in throughput.column("requests/s").items():
        assert float(rps.replace(",", "")) > 0, pair
    for pair in mtls.SIBLINGS:  # each TLS pair beside its plaintext one
        assert float(throughput.column("× plaintext sibling")[pair]) > 0, pair
    latency = report.table(f"Latency at {mtls.RATE:,} requests/s (hey)")
    assert set(latency.column("p50 ms")) == set(mtls.PAIRS)
    decisions = report.table("Inbound policy per request, in-process").column("ns per request")
    assert len(decisions) == 3 and all(float(ns) > 0 for ns in decisions.values())
    assert written == tmp_path / "mtls.md"
