"""Slow endpoint: three endpoints, one answers 50 ms late — does it drag the tail?

Three backends (``bench/backends_slow.py``) answer ``ok`` at once, except the third,
which waits 50 ms. Each balancer in turn fronts them at a fixed rate (hey), after
a warm-up so latency-aware balancers have learned; p50, p99 and p99.9 side by side:

- Tulle with every algorithm in ``tulle.balance`` (ring-hash hashes the client
  address, and hey is one client, so it is bounded load that spreads it);
- HAProxy ``balance roundrobin`` and ``balance leastconn``;
- nginx round-robin and ``least_conn``.

A balancer that sends a third of the requests to the slow endpoint has a p99 of
50 ms; one that notices has a p99 near the fast endpoints'. Target: Tulle
peak-EWMA p99 ≤ 5 ms.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import peers
from bench.harness import Harness
from bench.load import RUN_SLACK_SECONDS, HeyResult, LoadFailed, parse_hey_csv
from bench.processes import free_ports
from bench.report import Report, Table
from bench.stats import LatencySummary
from bench.tools import find_tool
from tulle.balance import ALGORITHMS

DESCRIPTION = "one of three endpoints 50 ms late: p50/p99/p99.9 per balancer, Tulle vs peers"
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "hey", "tulle")

DELAYS_MS = (0.0, 0.0, 50.0)
RATE = 500  # requests/s
# hey sends at most -q requests/s per worker on a ticker; 10/s per worker (100 ms
# ticks) keeps a 50 ms answer from delaying a worker's next request, so the rate
# holds whichever balancer is measured.
RATE_PER_WORKER = 10


@dataclass(frozen=True)
class Settings:
    warmup_seconds: float
    seconds: float


FULL = Settings(warmup_seconds=3.0, seconds=12.0)
QUICK = Settings(warmup_seconds=0.5, seconds=1.5)


@dataclass(frozen=True)
class Balancer:
    """A peer with one balancing setting: how to start it in front of the backends."""

    name: str
    start: Callable[[Harness, list[str]], peers.Peer]


def run(harness: Harness, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    endpoints = start_slow_backends(harness, DELAYS_MS)
    results: dict[str, LatencySummary] = {}
    achieved: dict[str, float] = {}
    errors: dict[str, int] = {}
    for balancer in balancers(harness.peer_names):
        peer = balancer.start(harness, endpoints)
        try:
            hey(harness, peer, settings.warmup_seconds, RATE)
            result = hey(harness, peer, settings.seconds, RATE)
            harness.check_alive(peer)
        finally:
            if peer.process is not None:
                harness.group.stop(peer.process)
        results[balancer.name] = LatencySummary.of(result.latencies)
        achieved[balancer.name] = result.achieved_rate
        errors[balancer.name] = result.non_2xx
        harness.log(f"{balancer.name}: p99 {results[balancer.name].p99 * 1000:.1f} ms")
        time.sleep(0.3)
    report = Report(
        scenario="slow_endpoint",
        title="Slow endpoint: one of three answers 50 ms late",
        description=(__doc__ or DESCRIPTION).split("\n\n", 1)[1].strip(),
    )
    report.tables.append(latency_table(results, achieved, errors, settings))
    harness.results_dir.mkdir(parents=True, exist_ok=True)
    image = harness.results_dir / "slow_endpoint.png"
    plot(image, report.title, results)
    report.images.append(image.name)
    report.notes += [
        "Balancers run one after another (each alone on the proxy CPU), after a "
        f"{settings.warmup_seconds:g} s warm-up at the same rate that is not measured.",
        "Compare ratios: the machine is shared. The simulation's small case "
        "(bench/results/simulate_lb.md) models this scenario without sockets.",
    ]
    return report


def start_slow_backends(harness: Harness, delays_ms: tuple[str | float, ...],
                        ramp_seconds: float = 60.0) -> list[str]:
    """Start one ``backends_slow`` process serving one port per delay; its endpoints."""
    ports = free_ports(len(delays_ms))
    listens = [f"127.0.0.1:{port}:{delay}" for port, delay in zip(ports, delays_ms, strict=True)]
    argv = [find_python(), "-m", "bench.backends_slow", "--ramp-seconds", str(ramp_seconds)]
    for listen in listens:
        argv += ["--listen", listen]
    process = harness.group.start("backends_slow", argv, harness.pinning.others)
    for port in ports:
        peers._wait_serving("backends_slow", process, "127.0.0.1", port)
    return [f"127.0.0.1:{port}" for port in ports]


def find_python() -> str:
    """The Python running the bench (it has uvloop and httptools)."""
    return sys.executable


def balancers(peer_names: tuple[str, ...]) -> list[Balancer]:
    chosen: list[Balancer] = []
    if "haproxy" in peer_names:
        chosen += [Balancer(f"haproxy {mode}", _haproxy(mode))
                   for mode in ("roundrobin", "leastconn")]
    if "nginx" in peer_names:
        chosen += [Balancer(f"nginx {mode or 'round-robin'}", _nginx(mode))
                   for mode in ("", "least_conn")]
    if "tulle" in peer_names:
        chosen += [Balancer(f"tulle {name}", _tulle(name)) for name in ALGORITHMS]
    return chosen


def _haproxy(mode: str) -> Callable[[Harness, list[str]], peers.Peer]:
    def start(harness: Harness, endpoints: list[str]) -> peers.Peer:
        (port,) = free_ports(1)
        conf = harness.workdir / f"haproxy-{mode}.cfg"
        text = peers.render_haproxy(port, endpoints)
        conf.write_text(text.replace("balance roundrobin", f"balance {mode}"))
        process = harness.group.start(
            f"haproxy-{mode}", [find_tool("haproxy"), "-f", str(conf), "-db"],
            harness.pinning.proxy,
        )
        peers._wait_serving("haproxy", process, "127.0.0.1", port)
        return peers.Peer(f"haproxy {mode}", "127.0.0.1", port, process)

    return start


def _nginx(mode: str) -> Callable[[Harness, list[str]], peers.Peer]:
    def start(harness: Harness, endpoints: list[str]) -> peers.Peer:
        (port,) = free_ports(1)
        name = f"nginx-{mode or 'rr'}"
        workdir = harness.workdir / name
        workdir.mkdir(exist_ok=True)
        (workdir / "nginx.tmp").mkdir(exist_ok=True)
        text = peers.render_nginx_proxy(workdir, port, endpoints)
        if mode:
            upstream = "    upstream backends {\n"
            text = text.replace(upstream, f"{upstream}        {mode};\n")
        conf = workdir / "nginx.conf"
        conf.write_text(text)
        argv = [find_tool("nginx"), "-p", str(workdir), "-c", str(conf),
                "-e", str(workdir / "nginx.error.log")]
        process = harness.group.start(name, argv, harness.pinning.proxy)
        peers._wait_serving(name, process, "127.0.0.1", port)
        return peers.Peer(name, "127.0.0.1", port, process)

    return start


def _tulle(algorithm: str) -> Callable[[Harness, list[str]], peers.Peer]:
    def start(harness: Harness, endpoints: list[str]) -> peers.Peer:
        manifests = harness.workdir / f"tulle-{algorithm}"
        manifests.mkdir(exist_ok=True)
        text = peers.render_tulle_manifest(endpoints)
        (manifests / "bench.yaml").write_text(
            text + f"  loadBalancer: {{algorithm: {algorithm}}}\n"
        )
        port, admin = free_ports(2)
        argv = [
            find_tool("tulle"), "proxy", "-f", str(manifests),
            "--outbound", f"127.0.0.1:{port}", "--inbound", "off",
            "--admin", f"127.0.0.1:{admin}",
        ]  # fmt: skip
        process = harness.group.start(f"tulle-{algorithm}", argv, harness.pinning.proxy)
        peers._wait_serving(f"tulle {algorithm}", process, "127.0.0.1", port)
        return peers.Peer(f"tulle {algorithm}", "127.0.0.1", port, process)

    return start


def hey(harness: Harness, peer: peers.Peer, seconds: float, rate: int) -> HeyResult:
    """About ``rate`` requests/s, ``RATE_PER_WORKER`` per worker, one CSV row each."""
    workers = max(1, rate // RATE_PER_WORKER)
    argv = [
        find_tool("hey"), "-z", f"{int(seconds * 1000)}ms", "-q", str(RATE_PER_WORKER),
        "-c", str(workers), "-host", peers.SERVICE_HOST, "-o", "csv", peer.url,
    ]  # fmt: skip
    done = harness.group.run(argv, harness.pinning.others, timeout=seconds + RUN_SLACK_SECONDS)
    if done.returncode != 0:
        raise LoadFailed(f"hey exited with {done.returncode}: {done.stderr.decode()}")
    result = parse_hey_csv(done.stdout.decode(errors="replace"), seconds)
    if not result.latencies:
        raise LoadFailed(f"hey got no successful response from {peer.url}")
    return result


def latency_table(results: dict[str, LatencySummary], achieved: dict[str, float],
                  errors: dict[str, int], settings: Settings) -> Table:
    reference = results.get("haproxy roundrobin")
    table = Table(
        title=f"Latency at {RATE} requests/s, {settings.seconds:g} s each (ms)",
        columns=["balancer", "achieved req/s", "p50", "p99", "p99.9",
                 "p99 ÷ haproxy roundrobin", "non-2xx"],
    )
    for name, s in results.items():
        table.rows.append([
            name, f"{achieved[name]:,.0f}", f"{s.p50 * 1000:.1f}", f"{s.p99 * 1000:.1f}",
            f"{s.p999 * 1000:.1f}",
            f"{s.p99 / reference.p99:.2f}" if reference else "—", str(errors[name]),
        ])  # fmt: skip
    table.note = (
        "Percentiles by nearest rank over one run per balancer; hey's CSV has 0.1 ms "
        "resolution. p99.9 rests on a handful of samples."
    )
    return table


def plot(path: Path, title: str, results: dict[str, LatencySummary]) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(12, 4.5))
    ax = fig.subplots()
    names = list(results)
    width = 0.27
    for offset, (label, attr) in enumerate((("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"))):
        xs = [i + (offset - 1) * width for i in range(len(names))]
        ax.bar(xs, [getattr(results[n], attr) * 1000 for n in names], width, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.axhline(5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylabel("latency (ms, log scale); dashed: 5 ms target")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
