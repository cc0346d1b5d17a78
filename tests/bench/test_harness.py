"""The baseline scenario end to end, in ``--quick`` mode, against real proxies.

Starts nginx backends, HAProxy, nginx, Tulle and ``direct``, drives about a second
of load through each, and checks the report has a row per peer with nonzero
throughput. Needs haproxy, nginx, wrk and hey: skipped locally when one is missing,
but a failure in CI (``CI=true``), where a skipped benchmark would hide a broken
setup.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.__main__ import run_scenario
from bench.peers import PEER_NAMES
from bench.scenarios import load_scenario
from tests.support.tools import require_tools


@pytest.mark.bench
def test_baseline_quick_has_a_row_per_peer(tmp_path: Path) -> None:
    require_tools(load_scenario("baseline").TOOLS)
    committed = Path(__file__).parents[2] / "bench" / "results" / "baseline.md"
    committed_mtime = committed.stat().st_mtime if committed.exists() else None

    report, written = run_scenario("baseline", quick=True, results_dir=tmp_path)

    throughput = report.table("Throughput").column("requests/s")
    assert list(throughput) == list(PEER_NAMES)
    for peer, cell in throughput.items():
        assert float(cell.replace(",", "")) > 0, f"{peer} served nothing"
    assert report.table("Throughput").column("errors") == dict.fromkeys(PEER_NAMES, "0")

    latency_peers = {row[0] for row in report.table("Latency").rows}
    assert latency_peers == set(PEER_NAMES)
    resources = report.table("Resources").column("peak RSS (MiB)")
    assert set(resources) == set(PEER_NAMES) - {"direct"}
    workers = report.table("Workers")
    scaled = ["tulle", "tulle-2w", "haproxy", "haproxy-2t", "floor", "floor-2p"]
    assert list(workers.column("requests/s")) == scaled
    for peer, cell in workers.column("requests/s").items():
        assert float(cell.replace(",", "")) > 0, f"{peer} served nothing"
    assert workers.column("errors") == dict.fromkeys(scaled, "0")
    (bound,) = (column for column in workers.columns if column.startswith("bound on"))
    for single in ("tulle", "haproxy", "floor"):  # the machine's ceiling, with its ratio
        assert re.fullmatch(r"[\d,]+ \(\d+\.\d\d\)", workers.column(bound)[single])

    assert written == tmp_path / "baseline.md"
    text = written.read_text()
    for peer in PEER_NAMES:
        assert f"| {peer} |" in text
    assert (tmp_path / "baseline.png").stat().st_size > 0
    # Quick runs never overwrite the committed result.
    assert (committed.stat().st_mtime if committed.exists() else None) == committed_mtime


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-load-tool"):
        require_tools(("no-such-load-tool",))


def test_missing_tool_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-load-tool"):  # outside CI
        require_tools(("no-such-load-tool",))
