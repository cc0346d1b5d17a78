"""Baseline: a tiny fixed response through each proxy — the cost of the proxy itself.

Three nginx backends answer ``200 ok`` instantly, so any difference between peers is
the proxy's own overhead. Measured side by side in one run, interleaved so that a
noisy neighbour hurts every peer alike:

- **throughput** — ``wrk -t1 -c32`` per peer, peers in turn, several rounds; the
  median requests/s and each peer's ratio to HAProxy;
- **latency at a fixed rate** — hey at 1,000 and 5,000 requests/s; p50, p99, p99.9
  (each the median over rounds), and what each proxy adds over ``direct``;
- **resources** — the proxy's CPU time per request at saturation, split into user
  and system time, and its ratio to the Python floor's (``floor``: the least a
  forwarder in Python does); CPU per 10,000 requests at each fixed rate; the peak
  resident memory over the whole run;
- **workers** — ``tulle proxy --workers 2`` (``tulle-2w``) under the same wrk load, in
  the same rounds, against the single pinned process; beside it HAProxy with two
  threads (``haproxy-2t``) and two floor processes on one port (``floor-2p``), so the
  table shows what a second core buys *any* proxy on this machine.

Issue 10's targets, read from one run: Tulle's CPU per request at most 1.5× the
floor's, and its requests/s at least 0.6× HAProxy's.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass

from bench import plots
from bench.harness import Harness
from bench.load import HEY_RATE_PER_WORKER
from bench.peers import Peer
from bench.processes import CpuTimes, machine_busy_seconds
from bench.report import Report, Table
from bench.stats import LatencySummary, median

DESCRIPTION = "tiny fixed response: throughput, latency at 1k/5k RPS, CPU and memory"
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "wrk", "hey", "tulle")

REFERENCE = "haproxy"  # ratios are given relative to this peer
FLOOR = "floor"  # CPU per request is also given relative to this peer
CEILING = "direct"  # added latency is given relative to this peer
CONNECTIONS = 32  # wrk connections, as in the issue
WORKERS = 2  # tulle-2w: one worker per core of the 2-core machine the issue measures on
SCALED = ("tulle", "haproxy", "floor")  # the peers also run with WORKERS processes/threads


@dataclass(frozen=True)
class Settings:
    rounds: int
    warmup_seconds: int  # per peer, before the first round; results thrown away
    throughput_seconds: int
    latency_seconds: float
    rates: tuple[int, ...]
    pause_seconds: float  # between runs, so one run's tail does not overlap the next


FULL = Settings(
    rounds=3, warmup_seconds=2, throughput_seconds=10, latency_seconds=10.0,
    rates=(1_000, 5_000), pause_seconds=0.5,
)  # fmt: skip
QUICK = Settings(
    rounds=1, warmup_seconds=0, throughput_seconds=1, latency_seconds=1.0,
    rates=(1_000, 5_000), pause_seconds=0.1,
)  # fmt: skip


def run(harness: Harness, quick: bool) -> Report:
    """Run the baseline on every selected peer and return its report."""
    settings = QUICK if quick else FULL
    backends = harness.start_backends(3)
    peers = harness.start_peers(backends)
    # Throughput only: the same wrk runs, in the same rounds, as the pinned single process.
    # Each peer of SCALED beside itself with WORKERS processes or threads, by its name.
    scaled: dict[str, Peer] = {}
    if "tulle" in harness.peer_names:
        scaled = {name: harness.start_scaled_peer(name, backends, WORKERS)
                  for name in SCALED if name in harness.peer_names}

    for peer in [*peers, *scaled.values()] if settings.warmup_seconds else []:
        harness.wrk(peer, settings.warmup_seconds, CONNECTIONS)

    rps: dict[str, list[float]] = defaultdict(list)
    cpu_saturated: dict[str, list[CpuTimes]] = defaultdict(list)
    cores_busy: dict[str, list[float]] = defaultdict(list)
    machine_cpu: dict[str, list[float]] = defaultdict(list)  # µs per request, all CPUs
    errors: dict[str, int] = defaultdict(int)
    for round_number in range(1, settings.rounds + 1):
        for peer in [*peers, *scaled.values()]:
            busy_before = machine_busy_seconds()
            result, times = harness.measured_times(
                peer, lambda p=peer: harness.wrk(p, settings.throughput_seconds, CONNECTIONS)
            )
            if result.requests:
                machine_cpu[peer.name].append(
                    (machine_busy_seconds() - busy_before) * 1e6 / result.requests)
            rps[peer.name].append(result.requests_per_second)
            errors[peer.name] += result.non_2xx + result.socket_errors
            if times is not None and result.requests:
                per_request = 1e6 / result.requests  # µs per request, per CPU second
                cpu_saturated[peer.name].append(
                    CpuTimes(times.user * per_request, times.system * per_request))
                cores_busy[peer.name].append(times.total / settings.throughput_seconds)
            harness.log(
                f"round {round_number}/{settings.rounds} wrk {peer.name}: "
                f"{result.requests_per_second:,.0f} req/s"
            )
            time.sleep(settings.pause_seconds)

    per_round: dict[tuple[int, str], list[LatencySummary]] = defaultdict(list)
    achieved: dict[tuple[int, str], list[float]] = defaultdict(list)
    cpu_at_rate: dict[tuple[int, str], list[float]] = defaultdict(list)
    latency_errors: dict[tuple[int, str], int] = defaultdict(int)
    for round_number in range(1, settings.rounds + 1):
        for rate in settings.rates:
            for peer in peers:
                result, cpu = harness.measured(
                    peer, lambda p=peer, r=rate: harness.hey(p, settings.latency_seconds, r)
                )
                key = (rate, peer.name)
                per_round[key].append(LatencySummary.of(result.latencies))
                achieved[key].append(result.achieved_rate)
                latency_errors[key] += result.non_2xx
                if cpu is not None:
                    cpu_at_rate[key].append(cpu / result.requests * 10_000)
                harness.log(
                    f"round {round_number}/{settings.rounds} hey {rate}/s {peer.name}: "
                    f"{result.achieved_rate:,.0f} req/s achieved"
                )
                time.sleep(settings.pause_seconds)

    rss = {peer.name: harness.peak_rss_kib(peer) for peer in [*peers, *scaled.values()]}
    names = [peer.name for peer in peers]
    throughput = {name: median(rps[name]) for name in names}
    latency = {
        rate: {name: LatencySummary.median_of(per_round[(rate, name)]) for name in names}
        for rate in settings.rates
    }

    report = Report(
        scenario="baseline",
        title="Baseline: the cost of the proxy on a tiny response",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else DESCRIPTION,
    )
    report.tables.append(_throughput_table(names, rps, throughput, errors, settings))
    report.tables.append(_latency_table(names, latency, achieved, latency_errors, settings))
    report.tables.append(_resources_table(peers, cpu_saturated, cpu_at_rate, rss, settings))
    if scaled:
        report.tables.append(_workers_table(
            {single: peer.name for single, peer in scaled.items()}, rps, cpu_saturated,
            cores_busy, machine_cpu, rss, errors, harness, settings,
        ))  # fmt: skip
    image = harness.results_dir / "baseline.png"
    harness.results_dir.mkdir(parents=True, exist_ok=True)
    plots.throughput_and_latency(image, report.title, throughput, latency, REFERENCE)
    report.images.append(image.name)
    report.notes += _notes()
    return report


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}" if reference else "—"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _added_ms(value: float, ceiling: float | None) -> str:
    return "—" if ceiling is None else f"{(value - ceiling) * 1000:+.1f}"


def _throughput_table(
    names: list[str],
    rps: dict[str, list[float]],
    throughput: dict[str, float],
    errors: dict[str, int],
    settings: Settings,
) -> Table:
    table = Table(
        title=f"Throughput (wrk -t1 -c{CONNECTIONS} -d{settings.throughput_seconds}s, "
        f"median of {settings.rounds})",
        columns=["peer", "requests/s", "min – max", f"ratio to {REFERENCE}", "errors"],
    )
    reference = throughput.get(REFERENCE)
    for name in names:
        table.rows.append([
            name,
            f"{throughput[name]:,.0f}",
            f"{min(rps[name]):,.0f} – {max(rps[name]):,.0f}",
            _ratio(throughput[name], reference),
            str(errors[name]),
        ])  # fmt: skip
    table.note = "errors: non-2xx responses plus socket errors, summed over rounds."
    return table


def _latency_table(
    names: list[str],
    latency: dict[int, dict[str, LatencySummary]],
    achieved: dict[tuple[int, str], list[float]],
    errors: dict[tuple[int, str], int],
    settings: Settings,
) -> Table:
    table = Table(
        title=f"Latency at a fixed rate (hey, {settings.latency_seconds:g} s × "
        f"{settings.rounds} rounds, ms)",
        columns=[
            "peer", "target req/s", "achieved req/s", "p50", "p99", "p99.9",
            f"added p50 vs {CEILING}", f"added p99 vs {CEILING}", "non-2xx",
        ],
    )  # fmt: skip
    for rate, summaries in latency.items():
        ceiling = summaries.get(CEILING)
        for name in names:
            summary = summaries[name]
            table.rows.append([
                name, f"{rate:,}", f"{median(achieved[(rate, name)]):,.0f}",
                _ms(summary.p50), _ms(summary.p99), _ms(summary.p999),
                _added_ms(summary.p50, ceiling.p50 if ceiling else None),
                _added_ms(summary.p99, ceiling.p99 if ceiling else None),
                str(errors[(rate, name)]),
            ])  # fmt: skip
    table.note = (
        "Each percentile (nearest rank) is taken per round, then the median over rounds "
        "is shown. hey prints "
        "latencies with 0.1 ms resolution. An achieved rate well below the target "
        "means the peer could not keep up, and its latencies understate the queueing."
    )
    return table


def _resources_table(
    peers: list[Peer],
    cpu_saturated: dict[str, list[CpuTimes]],
    cpu_at_rate: dict[tuple[int, str], list[float]],
    rss: dict[str, int | None],
    settings: Settings,
) -> Table:
    rate_columns = [f"CPU s / 10k req at {rate:,}/s" for rate in settings.rates]
    table = Table(
        title="Resources of the proxy process",
        columns=[
            "peer",
            "CPU µs / req (wrk)",
            "user µs",
            "system µs",
            f"ratio to {FLOOR}",
            f"ratio to {REFERENCE}",
            *rate_columns,
            "peak RSS (MiB)",
        ],
    )
    measured = [p for p in peers if p.pid is not None]

    def cpu(name: str) -> CpuTimes | None:
        return _median_times(cpu_saturated, name)

    floor, reference = cpu(FLOOR), cpu(REFERENCE)
    for peer in measured:
        times = cpu(peer.name)
        peak = rss[peer.name]
        table.rows.append([
            peer.name,
            "—" if times is None else f"{times.total:.1f}",
            "—" if times is None else f"{times.user:.1f}",
            "—" if times is None else f"{times.system:.1f}",
            _ratio(times.total, floor.total if floor else None) if times else "—",
            _ratio(times.total, reference.total if reference else None) if times else "—",
            *(f"{median(cpu_at_rate[(rate, peer.name)]):.3f}" for rate in settings.rates),
            "—" if peak is None else f"{peak / 1024:.1f}",
        ])  # fmt: skip
    table.note = (
        "CPU: utime and stime of the proxy process (/proc/<pid>/stat) across a wrk run, "
        "divided by the requests served, median over rounds; the clock ticks every "
        "10 ms, so short runs are coarse. System time includes the loopback TCP work the "
        "kernel does in the proxy's name, which grows per request when a proxy is slower "
        "(its peers sleep and must be woken). Peak RSS: VmHWM from /proc/<pid>/status at "
        "the end of the run. direct has no proxy and is left out."
    )
    return table


def _median_times(cpu_saturated: dict[str, list[CpuTimes]], name: str) -> CpuTimes | None:
    runs = cpu_saturated.get(name)
    if not runs:
        return None
    return CpuTimes(median([t.user for t in runs]), median([t.system for t in runs]))


def _workers_table(
    scaled: dict[str, str],
    rps: dict[str, list[float]],
    cpu_saturated: dict[str, list[CpuTimes]],
    cores_busy: dict[str, list[float]],
    machine_cpu: dict[str, list[float]],
    rss: dict[str, int | None],
    errors: dict[str, int],
    harness: Harness,
    settings: Settings,
) -> Table:
    """Each single pinned process beside its scaled variant (``scaled``: the name of
    each single peer's variant with WORKERS processes or threads).

    The machine's bound: while one process serves, the machine spends ``machine CPU µs
    / req`` on each request (proxy, wrk, backends, kernel). However the work is spread,
    this machine's CPUs cannot serve more than CPUs ÷ that, so no number of processes
    can beat ``bound`` — the ceiling a scaled variant is read against."""
    cpus = len(os.sched_getaffinity(0))
    pinned = harness.pinning.proxy
    single_cpus = "any" if pinned is None else ",".join(map(str, sorted(pinned)))
    table = Table(
        title=f"Workers (wrk -t1 -c{CONNECTIONS} -d{settings.throughput_seconds}s, median of "
        f"{settings.rounds}, in the throughput rounds)",
        columns=["peer", "processes", "CPUs", "requests/s", "min – max",
                 "ratio to one process", "CPU µs / req", "user µs", "system µs",
                 "proxy CPU busy (cores)", "machine CPU µs / req",
                 f"bound on {cpus} CPUs (ratio)", "peak RSS (MiB)", "errors"],
    )  # fmt: skip
    shape = {"tulle": f"{WORKERS} workers + supervisor", "haproxy": f"1, {WORKERS} threads",
             "floor": f"{WORKERS} on one port"}  # fmt: skip
    for single, many in scaled.items():
        reference = median(rps[single])
        per_request = median(machine_cpu[single]) if machine_cpu.get(single) else None
        bound = cpus * 1e6 / per_request if per_request else None
        for name, processes, where in ((single, "1", single_cpus),
                                       (many, shape[single], "any")):
            times = _median_times(cpu_saturated, name)
            peak = rss.get(name)
            machine = median(machine_cpu[name]) if machine_cpu.get(name) else None
            table.rows.append([
                name,
                processes,
                where,
                f"{median(rps[name]):,.0f}",
                f"{min(rps[name]):,.0f} – {max(rps[name]):,.0f}",
                _ratio(median(rps[name]), reference),
                "—" if times is None else f"{times.total:.1f}",
                "—" if times is None else f"{times.user:.1f}",
                "—" if times is None else f"{times.system:.1f}",
                f"{median(cores_busy[name]):.2f}" if cores_busy.get(name) else "—",
                "—" if machine is None else f"{machine:.1f}",
                f"{bound:,.0f} ({bound / reference:.2f})" if bound and name == single
                else "",
                "—" if peak is None else f"{peak / 1024:.1f}",
                str(errors[name]),
            ])  # fmt: skip
    table.note = (
        "Each peer's single process is the one of the tables above (pinned as they say); "
        f"its scaled variant (`tulle proxy --workers {WORKERS}`, HAProxy with `nbthread "
        f"{WORKERS}`, {WORKERS} floor processes sharing the port with SO_REUSEPORT) is not "
        "pinned: it may use every CPU, and shares them with wrk and the nginx backends, "
        "which stay where the pinning puts them. On a 2-core machine no proxy can have "
        "2 cores to itself: 'proxy CPU busy' (CPU seconds of every process of the peer "
        "÷ run seconds) shows how much each got, and HAProxy's and the floor's ratios "
        "show what a second core buys on this machine at all. 'machine CPU µs / req' is "
        "the CPU time of every CPU (the proxy, wrk, the backends, the kernel; /proc/stat) "
        "per request; 'bound' is CPUs ÷ that, measured with the single process: the most "
        "requests/s this machine could serve through that proxy however many processes "
        "it ran, and in brackets that bound as a ratio to one process. CPU and RSS are "
        "summed over a peer's processes."
    )
    return table


def _notes() -> list[str]:
    return [
        "Peers run in turn within each round (haproxy, nginx, floor, tulle, direct), so "
        "slow drift on a shared machine affects all of them alike; compare ratios, not "
        "absolute numbers.",
        "Every peer balances round-robin over the same three nginx backends with "
        "keep-alive connections to them; direct sends to one backend and is the "
        "ceiling the load generator and backends allow on this machine. Tulle runs with "
        "every default on (metrics, request timeout, retry budget, circuit breaker, the "
        "default balancer), from the package built with its hot modules compiled "
        "(`make compiled`; `make bench` uses it).",
        f"hey runs {HEY_RATE_PER_WORKER} requests/s per worker and adds workers for "
        f"the total rate, so a request slower than {1000 // HEY_RATE_PER_WORKER} ms "
        "delays that worker's next one (not a pure open loop).",
    ]
