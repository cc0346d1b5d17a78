"""The load-balancing simulation, tiny: runs every real balancer and gives sane figures."""

from __future__ import annotations

from pathlib import Path

from bench import simulate_lb
from bench.simulate_lb import Workload, plot, run_all, simulate, table
from tulle.balance import ALGORITHMS

TINY = Workload(proxies=5, endpoints=8, requests=4_000, seed=3)


def test_every_algorithm_runs_and_reports() -> None:
    results = run_all(TINY)
    assert [r.algorithm for r in results] == list(ALGORITHMS)
    for result in results:
        s = result.latency
        assert 0 < s.p50 <= s.p99 <= s.p999
        assert 0.0 <= result.errors < 0.5
        assert result.imbalance >= 1.0
    assert table(results).count("\n") == len(results) + 2


def test_same_workload_same_result() -> None:
    first, second = simulate("peak-ewma", TINY), simulate("peak-ewma", TINY)
    assert first.latency == second.latency


def test_small_case_keeps_the_slow_endpoint_out_of_the_p99_with_peak_ewma() -> None:
    small = Workload(**{**simulate_lb.SMALL.__dict__, "requests": 6_000})
    peak = simulate("peak-ewma", small)
    rr = simulate("round-robin", small)
    assert peak.latency.p99 < 0.005 < 0.050 < rr.latency.p99


def test_plot_and_report_are_written(tmp_path: Path) -> None:
    results = run_all(Workload(proxies=2, endpoints=3, requests=500))
    plot(results, tmp_path / "sim.png", "tiny")
    assert (tmp_path / "sim.png").stat().st_size > 1000
    text = simulate_lb.report(TINY, results, simulate_lb.SMALL, results)
    assert "| peak-ewma |" in text
