"""The demo's table and manifest: what the user reads, from canned signals."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from tulle.config import load
from tulle.demo.manifest import render_manifest, write_manifest
from tulle.demo.table import build_table
from tulle.telemetry.scrape import Signals, Target, Window

WEB = Target("outbound", "default", "web", "")
ROWS = [("127.0.0.1:9001", "fast"), ("127.0.0.1:9002", "slow ~60ms")]


def render(window: Window | None) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(build_table(window, WEB, ROWS, "web — last second", ascii_only=True))
    return console.export_text()


def line_of(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def test_rows_show_rps_success_and_percentiles() -> None:
    window = Window(
        seconds=1.0,
        endpoints={
            WEB._replace(endpoint="127.0.0.1:9001"): Signals(49, 1, 50.0, 0.98, 3.0, 7.5, 9.5),
        },
        services={WEB: Signals(49, 1, 50.0, 0.98, 3.0, 7.5, 9.5)},
    )
    text = render(window)
    cells = [cell.strip() for cell in line_of(text, "127.0.0.1:9001").split("|")[3:9]]
    assert cells == ["50.0", "100%", "98.00%", "3.0ms", "7.5ms", "9.5ms"]
    # An endpoint with no traffic still has its row, empty.
    assert "0.0" in line_of(text, "127.0.0.1:9002")
    assert "50.0" in line_of(text, "total")


def test_share_is_each_endpoints_part_of_the_services_responses() -> None:
    """What the balancer did, at a glance: the slow endpoint's share is small."""
    fast, slow = (WEB._replace(endpoint=address) for address, _ in ROWS)
    window = Window(
        seconds=1.0,
        endpoints={fast: Signals(49, 0, 49.0, 1.0, 6.0, 9.0, 9.8),
                   slow: Signals(1, 0, 1.0, 1.0, 60.0, 60.0, 60.0)},
        services={WEB: Signals(50, 0, 50.0, 1.0, 6.0, 9.0, 12.0)},
    )
    text = render(window)
    share = [line_of(text, row).split("|")[4].strip() for row in ("9001", "9002", "total")]
    assert share == ["98%", "2%", "100%"]


def test_the_table_fits_an_80_column_terminal() -> None:
    window = Window(
        seconds=1.0,
        endpoints={WEB._replace(endpoint="127.0.0.1:9002"): Signals(9, 1, 10.0, 0.9, 73.0,
                                                                      97.0, 99.0)},
        services={WEB: Signals(49, 1, 50.0, 0.98, 8.2, 92.0, 98.0)},
    )
    for ascii_only in (True, False):
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(build_table(window, WEB, [("127.0.0.1:9002", "slow ~60ms")], "web",
                                  ascii_only=ascii_only))
        text = console.export_text()
        assert max(len(line.rstrip()) for line in text.splitlines()) <= 80, text


def test_before_the_first_window_every_row_is_empty() -> None:
    text = render(None)
    for address, role in ROWS:
        assert role in line_of(text, address)


def test_the_proxys_own_answers_get_a_row() -> None:
    window = Window(
        seconds=1.0,
        endpoints={WEB: Signals(0, 5, 5.0, 0.0, 1.0, 1.0, 1.0)},
        services={WEB: Signals(0, 5, 5.0, 0.0, 1.0, 1.0, 1.0)},
    )
    assert "0.00%" in line_of(render(window), "(proxy)")


def test_the_manifest_is_a_valid_mesh_service(tmp_path: Path) -> None:
    endpoints = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
    write_manifest(tmp_path, endpoints)
    assert 'address: "127.0.0.1:9003"' in render_manifest(endpoints)
    config = load(tmp_path)
    assert config is not None
