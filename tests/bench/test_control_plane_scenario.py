"""The control_plane scenario: its manifests and markers, the subscriber fleet against
an in-process control plane, and (marked ``bench``) a quick run against a real
``tulle control`` process (about 10 s; skips when ``tulle`` is missing, except in CI).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.harness import open_harness
from bench.scenarios import control_plane, load_scenario
from bench.watch_fleet import Fleet
from tests.support.tools import require_tools
from tulle.config import load
from tulle.control import ControlPlane
from tulle.discovery.source import ManifestSource


def test_scenario_is_registered() -> None:
    assert load_scenario("control_plane") is control_plane


def test_rewritten_service_carries_the_marker_of_its_change(tmp_path: Path) -> None:
    for index in range(3):
        control_plane.write_service(tmp_path, index, 10003)
    control_plane.write_service(tmp_path, 1, control_plane.MARKER_BASE + 7)
    config = load(tmp_path)
    assert len(config.services) == 3
    assert not list(tmp_path.glob("*.tmp"))
    text = json.dumps(config.to_dict(), separators=(",", ":")).encode()
    assert control_plane.marker(7) in text
    assert control_plane.marker(70) not in text


def test_fleet_records_when_each_change_reaches_each_subscriber(tmp_path: Path) -> None:
    for index in range(2):
        control_plane.write_service(tmp_path, index, 10003)

    async def scenario() -> tuple[list[float], int, int]:
        source = ManifestSource(asyncio.get_running_loop(), tmp_path, watch=False)
        plane = ControlPlane(source)
        host, port = await plane.start("127.0.0.1", 0)
        fleet = await Fleet.connect(host, port, 5, timeout=10)
        try:
            for change in range(3):
                control_plane.write_service(tmp_path, change % 2,
                                            control_plane.MARKER_BASE + change)
                fleet.mark(control_plane.marker(change))
                source.refresh("test")
            await fleet.settle(5)
            return fleet.delays(), fleet.missing(), fleet.disconnected()
        finally:
            fleet.close()
            await plane.stop()

    delays, missing, disconnected = asyncio.run(scenario())
    assert missing == 0 and disconnected == 0
    assert len(delays) == 5 * 3
    assert all(0 <= delay < 5 for delay in delays)


def test_report_has_one_row_per_n_and_a_plot(tmp_path: Path) -> None:
    outcome = control_plane.Outcome(subscribers=10, changes=4, delays=[0.01, 0.02, 0.03],
                                    missing=1, disconnected=0, control_cpu=0.4,
                                    bench_cpu=0.1, peak_rss_kib=40960, snapshot_bytes=2048)
    with open_harness(tmp_path / "results", pin=False) as harness:
        report = control_plane.build_report(harness, control_plane.QUICK, [outcome])
    row = report.tables[0].rows[0]
    assert row[:6] == ["10", "4", "20.0 ms", "30.0 ms", "30.0 ms", "1"]
    assert row[7] == "100.0"  # CPU ms per change
    assert (tmp_path / "results" / "control_plane.png").stat().st_size > 0


@pytest.mark.bench
def test_quick_run_against_a_real_control_plane(tmp_path: Path) -> None:
    require_tools(["tulle"])
    with open_harness(tmp_path, pin=False) as harness:
        report = control_plane.run(harness, quick=True)
    table = report.tables[0]
    assert [row[0] for row in table.rows] == ["10", "50"]
    assert all(row[5] == "0" for row in table.rows), table.rows  # nothing missing
    assert not [note for note in report.notes if "disconnected" in note]
