"""The soak scenario: the slope it reports, and (marked ``bench``) a 20-second run with
every client kind and one endpoint kill against a real proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.resource_watch import ResourceWatch, Sample, slope
from bench.scenarios import soak


def test_slope_of_a_line_and_of_a_flat_noisy_series() -> None:
    assert slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)
    flat = [(float(t), 100.0 + (1 if t % 2 else -1)) for t in range(600)]
    assert abs(slope(flat)) < 0.001
    assert slope([(0, 5.0)]) == 0.0


def test_rss_slope_per_minute_leaves_the_warm_up_out() -> None:
    watch = ResourceWatch(pid=0, started=0.0)
    # Memory climbs for 60 s while pools fill, then holds.
    watch.samples = [Sample(float(t), 40_000 + 100 * min(t, 60), 20) for t in range(600)]
    assert watch.rss_slope_kib_per_min(warmup=60) == pytest.approx(0.0)
    assert watch.rss_slope_kib_per_min(warmup=0) > 0


@pytest.mark.bench
def test_soak_quick_runs_every_client_kind_through_a_kill(tmp_path: Path) -> None:
    from bench.__main__ import run_scenario

    report, written = run_scenario("soak", quick=True, results_dir=tmp_path,
                                   peer_names=("tulle",), pin=False)
    assert "ran to the end" in " ".join(report.notes)
    load = report.table("Load").column("outcomes")
    assert set(load) == set(soak.MIX)
    for kind in ("keep-alive", "new-connection", "bodies", "slow-reader"):
        assert "200 " in load[kind] + " ", (kind, load[kind])
    assert "reset" in load["reset"]
    assert any("q1 at" in note for note in report.notes)  # the kill happened
    resources = report.table("Proxy resources").column("max")
    assert int(resources["open fds"]) < 300  # 13 clients and their upstreams: bounded
    assert written.exists()
