"""Frozen endpoint: one of two endpoints stopped (SIGSTOP) for 5 s under ``hey -c 20``.

Issue 15 #14 found 17 requests sitting on a frozen endpoint for the whole 5.2 s. A
frozen process is not a dead one: its listening socket stays, so the kernel still
accepts connections and takes requests into its buffers, and nothing answers — a
stop-the-world pause, a starved VM, a process stopped in a debugger. No connection is
refused or reset, so nothing that watches for errors notices; only time does.

Two endpoints, each its own process (``bench/named_backend.py``: ``ok`` at once, with
an ``X-Bench-Backend`` header), so that one can be frozen alone. Each proxy in turn
takes ``hey -c 20 -q 50`` (20 workers, each at most 50 requests/s: 1,000 requests/s
in all, well under any proxy's ceiling, so the tail is the freeze's and not the
CPU's) for 15 s, after an unmeasured warm-up; 5 s in, endpoint ``b2`` is stopped
with SIGSTOP, and 10 s in it gets SIGCONT. Reported per proxy: p50, p99, p99.9 and
the maximum over every request of the run, and how many requests took longer than
1 s (a parked request waits for the rest of the freeze).

- **tulle**: defaults. The expected-latency balancer counts a request pending on an
  endpoint for longer than its usual latency as a sign that it stopped answering, so
  no new request goes there; the requests already there wait.
- **tulle hedge**: ``retries: {hedge: true}`` with ``timeouts: {perTry: 100ms}``: a
  try that has no response head after 100 ms is raced by a second one on the other
  endpoint; the first answer wins, the other is cancelled.
- **haproxy**, **nginx**: the bench's configurations (round-robin, keep-alive; see
  ``bench/peers.py``), whose server timeouts (30 s, 60 s) outlast the freeze.
- **haproxy 100ms**, **nginx 100ms**: their closest to hedging, a retry on the other
  server when no response came within 100 ms, abandoning the first try (HAProxy
  ``timeout server 100ms``, ``retry-on conn-failure empty-response
  response-timeout``, ``retries 2``, ``option redispatch 1``; nginx
  ``proxy_read_timeout 100ms`` with its default ``proxy_next_upstream error
  timeout``, which also marks the server failed for its ``fail_timeout`` of 10 s).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import peers
from bench.harness import Harness
from bench.load import HeyResult, LoadFailed, run_hey
from bench.processes import free_ports
from bench.report import Report, Table
from bench.scenarios.failover import Endpoints, replace_once
from bench.stats import LatencySummary
from bench.tools import find_tool

DESCRIPTION = (
    "one of two endpoints frozen (SIGSTOP) for 5 s under hey -c 20: p50/p99/p99.9/max "
    "and requests over 1 s, Tulle with and without hedging, HAProxy, nginx"
)
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "hey", "tulle")

BACKEND_NAMES = ("b1", "b2")
FROZEN = "b2"
WORKERS = 20
PER_WORKER = 50  # requests/s per hey worker: 1,000/s in all
HEDGE_DELAY = "100ms"  # Tulle's per-try timeout (the hedge delay), and the peers' retry
SLOW_SECONDS = 1.0  # "took longer than 1 s"


@dataclass(frozen=True)
class Settings:
    warmup_seconds: float
    before_seconds: float  # load before the freeze
    frozen_seconds: float
    after_seconds: float

    @property
    def seconds(self) -> float:
        return self.before_seconds + self.frozen_seconds + self.after_seconds


FULL = Settings(warmup_seconds=2.0, before_seconds=5.0, frozen_seconds=5.0, after_seconds=5.0)
QUICK = Settings(warmup_seconds=0.5, before_seconds=1.0, frozen_seconds=2.0, after_seconds=1.0)


@dataclass(frozen=True)
class Outcome:
    load: HeyResult  # one latency per request hey completed, and the statuses
    hedges: int | None  # Tulle's tulle_hedges_total after the run; None for the peers


@dataclass(frozen=True)
class Variant:
    """A proxy with one setting: how to start it in front of the endpoints."""

    name: str
    start: Callable[[Harness, list[str]], tuple[peers.Peer, int | None]]  # and Tulle's admin


def run(harness: Harness, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    endpoints = Endpoints(harness, BACKEND_NAMES)
    for name in BACKEND_NAMES:
        endpoints.wait_listening(name)
    outcomes: dict[str, Outcome] = {}
    for variant in variants(harness.peer_names):
        peer, admin = variant.start(harness, endpoints.addresses)
        try:
            hey(harness, peer, settings.warmup_seconds)
            outcomes[variant.name] = run_once(harness, peer, admin, endpoints, settings)
            harness.check_alive(peer)
        finally:
            endpoints.thaw(FROZEN)
            if peer.process is not None:
                harness.group.stop(peer.process)
        slow = slow_requests(outcomes[variant.name])
        harness.log(f"{variant.name}: {slow} requests over {SLOW_SECONDS:g} s")
        time.sleep(0.5)  # the thawed endpoint drains what it was sent
    return build_report(outcomes, settings)


def run_once(harness: Harness, peer: peers.Peer, admin: int | None, endpoints: Endpoints,
             settings: Settings) -> Outcome:
    """One measured run: hey for the whole time, ``FROZEN`` stopped in the middle."""
    done: list[str] = []

    def freeze() -> None:
        endpoints.freeze(FROZEN)
        done.append("frozen")

    def thaw() -> None:
        endpoints.thaw(FROZEN)
        done.append("thawed")

    timers = [threading.Timer(settings.before_seconds, freeze),
              threading.Timer(settings.before_seconds + settings.frozen_seconds, thaw)]
    for timer in timers:
        timer.start()
    try:
        result = hey(harness, peer, settings.seconds)
    finally:
        for timer in timers:
            timer.cancel()
            if timer.is_alive():
                timer.join()
    if done != ["frozen", "thawed"]:
        raise LoadFailed(f"hey ended before {FROZEN} was frozen and thawed")
    return Outcome(result, None if admin is None else hedges_of(admin))


def hey(harness: Harness, peer: peers.Peer, seconds: float) -> HeyResult:
    """``hey -c 20 -q 50`` for ``seconds``: one latency per completed request."""
    return run_hey(harness.group, peer.url, seconds, WORKERS * PER_WORKER,
                   harness.pinning.others, workers=WORKERS)


def hedges_of(admin: int) -> int:
    """Tulle's ``tulle_hedges_total`` for the bench service, from its admin /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf'^tulle_hedges_total\{{[^}}]*dst_service="{peers.SERVICE_HOST}"'
                      rf"[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


# ---------------------------------------------------------------- the proxies


def variants(peer_names: Sequence[str]) -> list[Variant]:
    chosen = []
    if "tulle" in peer_names:
        chosen += [Variant("tulle", _tulle("")), Variant("tulle hedge", _tulle(TULLE_HEDGE))]
    if "haproxy" in peer_names:
        chosen += [Variant("haproxy", _haproxy(())),
                   Variant(f"haproxy {HEDGE_DELAY}", _haproxy(HAPROXY_RETRY))]
    if "nginx" in peer_names:
        chosen += [Variant("nginx", _nginx("")),
                   Variant(f"nginx {HEDGE_DELAY}", _nginx(NGINX_RETRY))]
    return chosen


# Laid over the bench's MeshService (bench/peers.py), and the peers' configurations.
TULLE_HEDGE = f"  timeouts: {{perTry: {HEDGE_DELAY}}}\n  retries: {{hedge: true}}\n"
# In HAProxy's ``defaults``: a later ``timeout server`` replaces the bench's 30 s.
HAPROXY_RETRY = (f"timeout server {HEDGE_DELAY}", "retries 2",
                 "retry-on conn-failure empty-response response-timeout", "option redispatch 1")
NGINX_RETRY = f"            proxy_read_timeout {HEDGE_DELAY};\n"


def render_nginx(workdir: Path, listen_port: int, endpoints: list[str], extra: str) -> str:
    """The bench's nginx proxy; ``extra`` goes into its ``location``."""
    anchor = "            proxy_http_version 1.1;\n"
    return replace_once(peers.render_nginx_proxy(workdir, listen_port, endpoints), anchor,
                        anchor + extra)


def _tulle(extra: str) -> Callable[[Harness, list[str]], tuple[peers.Peer, int | None]]:
    def start(harness: Harness, endpoints: list[str]) -> tuple[peers.Peer, int | None]:
        peer, admin = peers.start_tulle(harness.group, harness.workdir,
                                        peers.render_tulle_manifest(endpoints) + extra,
                                        harness.pinning.proxy)
        peers._wait_serving("tulle", peer.process, "127.0.0.1", peer.port)  # type: ignore[arg-type]
        return peer, admin

    return start


def _haproxy(extra: Sequence[str]) -> Callable[[Harness, list[str]], tuple[peers.Peer, None]]:
    def start(harness: Harness, endpoints: list[str]) -> tuple[peers.Peer, None]:
        (port,) = free_ports(1)
        name = "haproxy-retry" if extra else "haproxy"
        conf = harness.workdir / f"{name}-frozen.cfg"
        conf.write_text(peers.render_haproxy(port, endpoints, defaults_extra=extra))
        process = harness.group.start(
            f"{name}-frozen", [find_tool("haproxy"), "-f", str(conf), "-db"],
            harness.pinning.proxy,
        )  # fmt: skip
        peers._wait_serving(name, process, "127.0.0.1", port)
        return peers.Peer(name, "127.0.0.1", port, process), None

    return start


def _nginx(extra: str) -> Callable[[Harness, list[str]], tuple[peers.Peer, None]]:
    def start(harness: Harness, endpoints: list[str]) -> tuple[peers.Peer, None]:
        (port,) = free_ports(1)
        name = "nginx-retry" if extra else "nginx"
        workdir = harness.workdir / f"{name}-frozen"
        workdir.mkdir(exist_ok=True)
        (workdir / "nginx.tmp").mkdir(exist_ok=True)
        conf = workdir / "nginx.conf"
        conf.write_text(render_nginx(workdir, port, endpoints, extra))
        argv = [find_tool("nginx"), "-p", str(workdir), "-c", str(conf),
                "-e", str(workdir / "nginx.error.log")]  # fmt: skip
        process = harness.group.start(f"{name}-frozen", argv, harness.pinning.proxy)
        peers._wait_serving(name, process, "127.0.0.1", port)
        return peers.Peer(name, "127.0.0.1", port, process), None

    return start


# ---------------------------------------------------------------- the report


def slow_requests(outcome: Outcome) -> int:
    return sum(1 for latency in outcome.load.latencies if latency > SLOW_SECONDS)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def results_table(outcomes: dict[str, Outcome], settings: Settings) -> Table:
    table = Table(
        title=(f"{FROZEN} frozen from {settings.before_seconds:g} s to "
               f"{settings.before_seconds + settings.frozen_seconds:g} s of "
               f"{settings.seconds:g} s, hey -c {WORKERS} -q {PER_WORKER}"),
        columns=["proxy", "requests", "non-2xx", "p50", "p99", "p99.9", "max",
                 f"over {SLOW_SECONDS:g} s", "hedges"],
    )  # fmt: skip
    for name, outcome in outcomes.items():
        whole = LatencySummary.of(outcome.load.latencies)
        table.rows.append([
            name, f"{whole.count:,}", str(outcome.load.non_2xx),
            _ms(whole.p50), _ms(whole.p99), _ms(whole.p999), _ms(whole.maximum),
            str(slow_requests(outcome)),
            "—" if outcome.hedges is None else f"{outcome.hedges:,}",
        ])  # fmt: skip
    table.note = (
        "Latencies in ms, nearest rank, over every request hey completed in the run "
        "(its CSV keeps 0.1 ms; it leaves out requests that failed, and none timed out "
        "at its 20 s). **hedges**: Tulle's `tulle_hedges_total` after the run (warm-up "
        "included)."
    )
    return table


def build_report(outcomes: dict[str, Outcome], settings: Settings) -> Report:
    report = Report(
        scenario="frozen_endpoint",
        title="Frozen endpoint: one of two stopped with SIGSTOP for "
              f"{settings.frozen_seconds:g} s under load",
        description=(__doc__ or DESCRIPTION).split("\n\n", 1)[1].strip(),
    )
    report.tables.append(results_table(outcomes, settings))
    report.notes += [
        "Proxies run one after another, each alone on the proxy CPU, after a "
        f"{settings.warmup_seconds:g} s unmeasured warm-up at the same rate; the same two "
        "endpoint processes serve all of them.",
        "One run per proxy on a shared machine: the counts of slow requests and the "
        "maxima are the robust figures; compare percentiles as ratios.",
    ]
    return report
