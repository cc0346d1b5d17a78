"""Degrading endpoint: one endpoint's latency climbs from 1 to 40 ms — who notices, and when?

Three backends (``bench/backends_slow.py``) answer after 1 ms; the third's delay
climbs linearly to 40 ms over the run (the ramp restarts for each balancer).
Each balancer in turn takes a fixed rate (hey) for the length of the ramp, and
the p99 of each time window is plotted: a balancer that ignores latency follows
the ramp up (a third of the requests are on the degrading endpoint, so its p99
is that endpoint's delay); a latency-aware one stays near the fast endpoints.
Same balancers as ``slow_endpoint``.
"""

from __future__ import annotations

import csv
import http.client
import io
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import peers
from bench.harness import Harness
from bench.load import RUN_SLACK_SECONDS, LoadFailed
from bench.report import Report, Table
from bench.scenarios.slow_endpoint import RATE_PER_WORKER, balancers, start_slow_backends
from bench.stats import percentile
from bench.timeline import read_records
from bench.tools import find_tool

DESCRIPTION = "one endpoint degrades from 1 to 40 ms: p99 over time per balancer"
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "hey", "tulle")

RATE = 500  # requests/s
START_MS, END_MS = 1.0, 40.0


@dataclass(frozen=True)
class Settings:
    seconds: float  # the ramp and the measurement
    window: float  # p99 per window of this many seconds


FULL = Settings(seconds=30.0, window=3.0)
QUICK = Settings(seconds=3.0, window=1.0)


Load = Callable[[Harness, peers.Peer, float], list[tuple[float, float]]]


def run(harness: Harness, quick: bool) -> Report:
    return measure(harness, quick, hey_offsets, "degrading_endpoint", "hey")


def measure(harness: Harness, quick: bool, load: Load, scenario: str, load_name: str) -> Report:
    """Each balancer in turn under ``load`` while the endpoint degrades."""
    settings = QUICK if quick else FULL
    delays = (START_MS, START_MS, f"{START_MS:g}:{END_MS:g}")
    endpoints = start_slow_backends(harness, delays, ramp_seconds=settings.seconds)
    degrading = endpoints[-1]
    series: dict[str, list[float]] = {}
    overall: dict[str, float] = {}
    for balancer in balancers(harness.peer_names):
        peer = balancer.start(harness, endpoints)
        try:
            _reset_ramp(degrading)
            offsets = load(harness, peer, settings.seconds)
            harness.check_alive(peer)
        finally:
            if peer.process is not None:
                harness.group.stop(peer.process)
        series[balancer.name] = _p99_per_window(offsets, settings)
        overall[balancer.name] = percentile(sorted(lat for _, lat in offsets), 99)
        harness.log(f"{balancer.name}: p99 over the run {overall[balancer.name] * 1000:.1f} ms")
        time.sleep(0.3)
    report = Report(
        scenario=scenario,
        title=f"Degrading endpoint: one of three climbs from {START_MS:g} to {END_MS:g} ms "
              f"({load_name} load)",
        description=(__doc__ or DESCRIPTION).split("\n\n", 1)[1].strip(),
    )
    report.tables.append(_table(series, overall, settings))
    harness.results_dir.mkdir(parents=True, exist_ok=True)
    image = harness.results_dir / f"{scenario}.png"
    _plot(image, report.title, series, settings)
    report.images.append(image.name)
    report.notes.append(
        f"{RATE} requests/s; the degrading endpoint's delay at time t is "
        f"{START_MS:g} + ({END_MS:g} - {START_MS:g}) × t / {settings.seconds:g} s ms."
    )
    return report


def _reset_ramp(endpoint: str) -> None:
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/__ramp/reset")
        conn.getresponse().read()
    finally:
        conn.close()


def open_loop_offsets(harness: Harness, peer: peers.Peer,
                      seconds: float) -> list[tuple[float, float]]:
    """(seconds since start, latency) of every successful request, from the open-loop
    generator (``bench/fixed_rate.py``): requests on a fixed schedule, no bursts."""
    out = harness.workdir / f"open-loop-{peer.name}-{time.monotonic_ns()}.csv"
    argv = [
        sys.executable, "-m", "bench.fixed_rate", "--url", peer.url, "--rate", str(RATE),
        "--seconds", f"{seconds:g}", "--start-at", f"{time.monotonic() + 0.5:.6f}",
        "--host-header", peers.SERVICE_HOST, "--out", str(out),
    ]  # fmt: skip
    done = harness.group.run(argv, harness.pinning.others, timeout=seconds + 40.0)
    if done.returncode != 0:
        raise LoadFailed(f"fixed_rate exited with {done.returncode}: {done.stderr.decode()}")
    rows = [(r.offset, r.latency) for r in read_records(out) if r.ok]
    if not rows:
        raise LoadFailed(f"fixed_rate got no successful response from {peer.url}")
    return rows


def hey_offsets(harness: Harness, peer: peers.Peer,
                seconds: float) -> list[tuple[float, float]]:
    """(seconds since start, latency) of every successful request, from hey."""
    argv = [
        find_tool("hey"), "-z", f"{int(seconds * 1000)}ms", "-q", str(RATE_PER_WORKER),
        "-c", str(RATE // RATE_PER_WORKER), "-host", peers.SERVICE_HOST, "-o", "csv", peer.url,
    ]  # fmt: skip
    done = harness.group.run(argv, harness.pinning.others, timeout=seconds + RUN_SLACK_SECONDS)
    if done.returncode != 0:
        raise LoadFailed(f"hey exited with {done.returncode}: {done.stderr.decode()}")
    reader = csv.reader(io.StringIO(done.stdout.decode(errors="replace")))
    header = next(reader, None) or []
    if "offset" not in header or "status-code" not in header:
        raise LoadFailed(f"cannot parse hey CSV output (header {header!r})")
    offset, status = header.index("offset"), header.index("status-code")
    rows = [(float(r[offset]), float(r[0])) for r in reader if r and r[status] == "200"]
    if not rows:
        raise LoadFailed(f"hey got no successful response from {peer.url}")
    return rows


def _p99_per_window(rows: list[tuple[float, float]], settings: Settings) -> list[float]:
    windows: dict[int, list[float]] = defaultdict(list)
    count = round(settings.seconds / settings.window)
    for at, latency in rows:
        windows[min(int(at / settings.window), count - 1)].append(latency)
    return [percentile(sorted(windows[i]), 99) if windows[i] else float("nan")
            for i in range(count)]


def _table(series: dict[str, list[float]], overall: dict[str, float],
           settings: Settings) -> Table:
    count = len(next(iter(series.values()))) if series else 0
    picks = sorted({0, count // 2, count - 1})
    columns = ["balancer", "p99 over the run"] + [
        f"p99 at {(i + 0.5) * settings.window:g} s" for i in picks
    ]
    table = Table(title=f"p99 while the endpoint degrades ({RATE} requests/s, ms)",
                  columns=columns)
    for name, values in series.items():
        table.rows.append([name, f"{overall[name] * 1000:.1f}",
                           *(f"{values[i] * 1000:.1f}" for i in picks)])
    table.note = f"p99 per {settings.window:g} s window, nearest rank."
    return table


def _plot(path: Path, title: str, series: dict[str, list[float]], settings: Settings) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    for name, values in series.items():
        xs = [(i + 0.5) * settings.window for i in range(len(values))]
        style = "-" if name.startswith("tulle") else "--"
        ax.plot(xs, [v * 1000 for v in values], style, marker=".", label=name)
    xs = [0.0, settings.seconds]
    ax.plot(xs, [START_MS, END_MS], ":", color="black", label="degrading endpoint's delay")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("p99 latency per window (ms)")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
