"""Control plane: how update propagation, CPU and memory grow with the number of proxies.

One real ``tulle control -f <dir>`` process serves M generated ``MeshService``
manifests (one file each, three endpoints each). N simulated proxies
(``bench/watch_fleet.py``: raw asyncio subscribers in the bench process, no real
proxies) subscribe to ``/v1/watch``. Then the bench churns endpoints at a steady
rate: change *k* rewrites service ``k mod M``'s file (atomically, via rename) so
its third endpoint is ``127.0.0.1:<20000 + k>`` — the marker — and sends the
control plane SIGHUP, its documented "re-read now" (the 1 s file poll would
otherwise dominate every number). Measured:

- **propagation**: per subscriber and change, from just after the SIGHUP to the
  arrival of the first snapshot line containing that change's marker; p50, p99
  and max over all (subscriber, change) pairs;
- **control-plane CPU**: utime + stime of the ``tulle control`` process
  (``/proc/<pid>/stat``) over the churn only, total and per change;
- **peak RSS** of the control plane (``VmHWM``), connections and churn included;
- **bench CPU** over the churn (the subscribers' side), to show when the
  measuring process, not the control plane, is the limit.

A fresh control plane is started for every N. Control plane pinned to one CPU, the
bench (all subscribers) to the other.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import control_plots
from bench.harness import Harness
from bench.peers import PeerFailed
from bench.processes import cpu_seconds, free_ports, peak_rss_kib, wait_until
from bench.report import Report, Table
from bench.stats import percentile
from bench.tools import find_tool
from bench.watch_fleet import Fleet

DESCRIPTION = (
    "N simulated proxies x M services with endpoint churn: update propagation p50/p99, "
    "control-plane CPU and peak RSS as N grows"
)
TOOLS: tuple[str, ...] = ("tulle",)

MARKER_BASE = 20000
SETTLE_SECONDS = 20.0

# Written into every result file: what the numbers mean for the design (see
# docs/architecture.md, "Where the design stops scaling").
ANALYSIS = [
    "Per change the control plane (1) re-reads every manifest (the ManifestSource "
    "reloads the whole directory: ~16 ms for 100 services, measured in-process), "
    "(2) encodes the whole snapshot once (`to_dict` + `json.dumps`, ~4.5 ms, ~88 KB) and "
    "(3) writes the same bytes to every subscriber. Only (3) grows with N: the growth of "
    "CPU per change from N=10 to N=1,000 is the fan-out, tens of µs per subscriber "
    "(an 88 KB copy into each socket).",
    "Bytes on the wire grow as snapshot size × changes × N: at 1,000 proxies, 100 "
    "services and 2 changes/s that is ~176 MB/s of loopback traffic for one endpoint "
    "moving. Snapshot size grows with M, so the product M × N × change rate is what "
    "stops it, in one single-threaded process.",
    "Linkerd, for comparison (facts, not a measurement here): its destination API "
    "(linkerd2-proxy-api `destination.proto`) is a stream *per destination* a proxy "
    "asks for (`rpc Get(GetDestination) returns (stream Update)`), and updates are "
    "incremental `add` / `remove` address sets; a proxy hears only about services it "
    "talks to, and a change costs the size of the change. Buoyant's sizing guide "
    "(docs.buoyant.io, BEL 'Resource Request and Limits') recommends 100m CPU and "
    "500 MB memory for the destination controller as a safe start for moderate load.",
]  # how long after the last change every subscriber may take


@dataclass(frozen=True)
class Settings:
    subscribers: tuple[int, ...]
    services: int
    changes_per_second: float
    churn_seconds: float


FULL = Settings(subscribers=(10, 100, 1000), services=100, changes_per_second=2.0,
                churn_seconds=20.0)
QUICK = Settings(subscribers=(10, 50), services=20, changes_per_second=4.0, churn_seconds=2.0)


@dataclass(frozen=True)
class Outcome:
    """What one N measured."""

    subscribers: int
    changes: int
    delays: list[float]  # seconds, one per (subscriber, change) received
    missing: int
    disconnected: int
    control_cpu: float  # seconds, over the churn
    bench_cpu: float  # seconds, over the churn
    peak_rss_kib: int
    snapshot_bytes: int

    def p(self, q: float) -> float:
        return percentile(sorted(self.delays), q) if self.delays else float("nan")


def render_service(index: int, third_port: int) -> str:
    """A ``MeshService`` manifest: three endpoints, the third one the change marker."""
    return (
        "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\n"
        f"metadata: {{name: svc-{index}, namespace: bench}}\n"
        "spec:\n  protocol: http\n  port: 80\n  endpoints:\n"
        "    - {address: 127.0.0.1:10001}\n    - {address: 127.0.0.1:10002}\n"
        f"    - {{address: '127.0.0.1:{third_port}'}}\n"
    )


def marker(change: int) -> bytes:
    """Bytes found in a snapshot only once change number ``change`` is in it."""
    return f'"127.0.0.1:{MARKER_BASE + change}"'.encode()


def write_service(directory: Path, index: int, third_port: int) -> None:
    """Replace one service's file atomically (the ``.tmp`` name is not a manifest)."""
    final = directory / f"svc-{index}.yaml"
    temporary = directory / f"svc-{index}.yaml.tmp"
    temporary.write_text(render_service(index, third_port))
    os.replace(temporary, final)


@contextmanager
def _open_files(wanted: int) -> Iterator[None]:
    """Raise the soft descriptor limit (children inherit it) for N connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = soft if hard != resource.RLIM_INFINITY and hard < wanted else max(soft, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def _pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the bench process (the subscribers) on ``cpus`` for the block."""
    before = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _churn(fleet: Fleet, directory: Path, pid: int, settings: Settings) -> int:
    """Make the changes at a steady rate; returns how many were made."""
    count = max(1, round(settings.churn_seconds * settings.changes_per_second))
    interval = 1.0 / settings.changes_per_second
    start = time.monotonic()
    for change in range(count):
        await asyncio.sleep(max(0.0, start + change * interval - time.monotonic()))
        write_service(directory, change % settings.services, MARKER_BASE + change)
        fleet.mark(marker(change))
        os.kill(pid, signal.SIGHUP)
    return count


async def _measure(host: str, port: int, pid: int, directory: Path, n: int,
                   settings: Settings) -> tuple[Fleet, int, float, float]:
    fleet = await Fleet.connect(host, port, n)
    try:
        cpu_before, own_before = cpu_seconds(pid), _own_cpu()
        count = await _churn(fleet, directory, pid, settings)
        await fleet.settle(SETTLE_SECONDS)
        cpu, own = cpu_seconds(pid) - cpu_before, _own_cpu() - own_before
        return fleet, count, cpu, own
    finally:
        fleet.close()


def measure(harness: Harness, n: int, settings: Settings) -> Outcome:
    """Start a control plane on fresh manifests, subscribe ``n`` watchers, churn, measure."""
    directory = harness.workdir / f"manifests-{n}"
    directory.mkdir()
    for index in range(settings.services):
        write_service(directory, index, 10003)
    (port,) = free_ports(1)
    argv = [find_tool("tulle"), "control", "-f", str(directory),
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    process = harness.group.start(f"control-{n}", argv, harness.pinning.proxy)
    try:
        if not wait_until(lambda: _listening(port) or process.popen.poll() is not None, 30):
            raise PeerFailed(f"tulle control did not listen; log:\n{process.log_tail()}")
        if process.popen.poll() is not None:
            raise PeerFailed(f"tulle control exited; log:\n{process.log_tail()}")
        with _pinned(harness.pinning.others):
            fleet, count, cpu, own = asyncio.run(
                _measure("127.0.0.1", port, process.pid, directory, n, settings))
        if process.popen.poll() is not None:
            raise PeerFailed(f"tulle control died during the run; log:\n{process.log_tail()}")
        rss = peak_rss_kib(process.pid)
        line_bytes = max((w.bytes // max(w.snapshots, 1) for w in fleet.watchers), default=0)
        return Outcome(subscribers=n, changes=count, delays=fleet.delays(),
                       missing=fleet.missing(), disconnected=fleet.disconnected(),
                       control_cpu=cpu, bench_cpu=own, peak_rss_kib=rss,
                       snapshot_bytes=line_bytes)
    finally:
        harness.group.stop(process)


def run(harness: Harness, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    outcomes = []
    with _open_files(2 * max(settings.subscribers) + 256):
        for n in settings.subscribers:
            harness.log(f"control_plane: {n} subscribers x {settings.services} services")
            outcome = measure(harness, n, settings)
            harness.log(f"control_plane: N={n} p50 {outcome.p(50) * 1000:.1f} ms "
                        f"p99 {outcome.p(99) * 1000:.1f} ms cpu {outcome.control_cpu:.2f} s")
            outcomes.append(outcome)
    return build_report(harness, settings, outcomes)


def build_report(harness: Harness, settings: Settings, outcomes: list[Outcome]) -> Report:
    table = Table(
        title=(f"Propagation and cost: {settings.services} services, "
               f"{settings.changes_per_second:g} changes/s for {settings.churn_seconds:g} s"),
        columns=["subscribers (N)", "changes", "propagation p50", "p99", "max",
                 "missing", "control CPU s (churn)", "CPU ms / change", "peak RSS MiB",
                 "snapshot KiB", "bench CPU s"],
        note=("propagation: SIGHUP sent → snapshot carrying the change read by the "
              "subscriber, over all (subscriber, change) pairs. missing: pairs never "
              f"received within {SETTLE_SECONDS:g} s of the last change. bench CPU: the "
              "process running every subscriber, on the other CPU."),
    )
    for o in outcomes:
        table.rows.append([
            f"{o.subscribers:,}", str(o.changes), f"{o.p(50) * 1000:.1f} ms",
            f"{o.p(99) * 1000:.1f} ms",
            f"{max(o.delays) * 1000:.1f} ms" if o.delays else "–",
            str(o.missing), f"{o.control_cpu:.2f}",
            f"{o.control_cpu / o.changes * 1000:.1f}", f"{o.peak_rss_kib / 1024:.1f}",
            f"{o.snapshot_bytes / 1024:.0f}", f"{o.bench_cpu:.2f}",
        ])
    image = "control_plane.png"
    harness.results_dir.mkdir(parents=True, exist_ok=True)
    control_plots.scaling(
        harness.results_dir / image,
        f"tulle control: {settings.services} services, "
        f"{settings.changes_per_second:g} changes/s",
        [o.subscribers for o in outcomes],
        [o.p(99) * 1000 for o in outcomes],
        [o.p(50) * 1000 for o in outcomes],
        [o.control_cpu / o.changes * 1000 for o in outcomes],
    )
    notes = [f"{o.disconnected} of {o.subscribers} subscribers were disconnected during "
             "the run" for o in outcomes if o.disconnected] + ANALYSIS
    return Report(
        scenario="control_plane",
        title="Control plane: propagation, CPU and memory vs. number of proxies",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        tables=[table], images=[image], notes=notes,
    )
