"""The frozen-endpoint scenario: its configurations, its table on canned data, and
(marked ``bench``) a quick run end to end against real proxies.

The quick run freezes one of two endpoints for 2 s under ``hey -c 20`` through Tulle
(with and without hedging), HAProxy and nginx (plain and retrying after 100 ms): about
40 s. Like ``test_harness.py`` it skips when a tool is missing, except in CI
(``CI=true``), where it fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import peers
from bench.load import HeyResult
from bench.scenarios import frozen_endpoint, load_scenario
from tests.support.tools import require_tools
from tulle.config import load


def test_tulle_hedges_after_100_ms_with_the_bench_service(tmp_path: Path) -> None:
    path = tmp_path / "bench.yaml"
    path.write_text(peers.render_tulle_manifest(["127.0.0.1:1", "127.0.0.1:2"])
                    + frozen_endpoint.TULLE_HEDGE)
    service = load(path, environ={}).services["bench.default"]
    assert service.retries is not None and service.retries.hedge
    assert service.timeouts.per_try == 0.1


def test_the_peers_retry_on_the_other_server_after_100_ms(tmp_path: Path) -> None:
    haproxy = peers.render_haproxy(8080, ["127.0.0.1:1", "127.0.0.1:2"],
                                   defaults_extra=frozen_endpoint.HAPROXY_RETRY)
    for line in ("timeout server 100ms", "retries 2", "option redispatch 1",
                 "retry-on conn-failure empty-response response-timeout"):
        assert f"    {line}\n" in haproxy
    # The later timeout server wins over the bench's 30 s: HAProxy reads it that way.
    assert haproxy.index("timeout server 30s") < haproxy.index("timeout server 100ms")
    nginx = frozen_endpoint.render_nginx(tmp_path, 8080, ["127.0.0.1:1"],
                                         frozen_endpoint.NGINX_RETRY)
    assert "            proxy_read_timeout 100ms;\n" in nginx
    assert "proxy_next_upstream" not in nginx  # its default, error timeout, applies


def test_haproxy_accepts_the_retrying_configuration(tmp_path: Path) -> None:
    require_tools(["haproxy"])
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(peers.render_haproxy(8080, ["127.0.0.1:1", "127.0.0.1:2"],
                                         defaults_extra=frozen_endpoint.HAPROXY_RETRY))
    checked = subprocess.run(["haproxy", "-c", "-f", str(conf)], capture_output=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr.decode()


def test_the_table_counts_requests_over_a_second_and_reads_the_tail() -> None:
    # 2,000 requests: 1,990 fast, 10 parked for 5 s; p99.9 is the 1,998th.
    latencies = [0.002] * 1990 + [5.0] * 10
    outcome = frozen_endpoint.Outcome(HeyResult(latencies, {200: 1999, 503: 1}, 15.0), 7)
    table = frozen_endpoint.results_table({"tulle hedge": outcome}, frozen_endpoint.FULL)
    row = dict(zip(table.columns, table.rows[0], strict=True))
    assert row["requests"] == "2,000"
    assert row["non-2xx"] == "1"
    assert (row["p50"], row["p99"], row["p99.9"], row["max"]) == ("2.0", "2.0", "5,000.0",
                                                                  "5,000.0")
    assert row["over 1 s"] == "10"
    assert row["hedges"] == "7"


@pytest.mark.bench
def test_frozen_endpoint_quick_run_hedging_parks_no_request(tmp_path: Path) -> None:
    from bench.__main__ import run_scenario

    require_tools(load_scenario("frozen_endpoint").TOOLS)
    report, written = run_scenario("frozen_endpoint", quick=True, results_dir=tmp_path,
                                   peer_names=("haproxy", "nginx", "tulle"))
    table = report.tables[0]
    over = table.column("over 1 s")
    assert set(over) == {"tulle", "tulle hedge", "haproxy", "haproxy 100ms", "nginx",
                         "nginx 100ms"}
    assert over["tulle hedge"] == "0"  # every try on the frozen endpoint was hedged
    assert int(table.column("hedges")["tulle hedge"]) > 0
    # Without a short timeout a round-robin proxy parks requests for the whole freeze.
    assert int(over["haproxy"]) > 0 and int(over["nginx"]) > 0
    assert written == tmp_path / "frozen_endpoint.md"
