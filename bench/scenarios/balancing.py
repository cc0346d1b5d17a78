"""The balancing suite (issue 11): one case per property of a good default balancer, Tulle
beside HAProxy (``leastconn``, ``random(2)``) and nginx (``least_conn``).

Each case starts its backends (``bench/backends_mixed.py``: one port per endpoint,
each with its own delay, jitter, failure rate, worker limit, heavy requests or cold
start, every answer naming its backend) and then, for each balancer in turn, a fresh
proxy in front of them, and sends a fixed request rate (``bench/fixed_rate.py``,
open loop, every request recorded with the backend that answered it) from the first
request on, with no warm-up: what a user sees on day one. It reports each endpoint's
share of the requests and the client's p50/p99 over successful requests, with
failures counted beside them.

1. **equal, one at a time**: three equal endpoints (~1 ms), one of them 10× slower for
   its first 0.2 s (cold); 50 requests/s, so no two are ever in flight together.
2. **equal, under load**: three equal endpoints, 600 requests/s.
3. **slow in the middle**: ``tulle demo``'s endpoints — fast (~6 ms), slow (~60 ms),
   fast but failing 5% — at the demo's 50 requests/s.
4. **slow among N**: one ~60 ms endpoint among N = 2 … 50, a third of the others
   failing 5%, 20 requests/s per endpoint; the slow endpoint's share per N.
5. **failures**: three fast endpoints, one failing 5%, one 25%.
6. **a new endpoint**: two busy endpoints; a third starts a third of the way into the
   run and is 10× slower for its first 3 s. Every proxy knows its address from the
   start and finds it when it accepts connections (HAProxy and nginx with the
   failover scenario's checks and retries; Tulle reconnects on its own).
7. **uneven request costs**: three equal endpoints with one worker each; 1% of
   requests take 100× longer (linkerd2 #11043).

The simulation runs the same cases at 100 proxies × 50 endpoints
(``bench/simulate_lb.py``).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench import peers, timeline
from bench.backends_mixed import Profile
from bench.harness import Harness
from bench.named_backend import HEADER
from bench.processes import Started, free_ports, wait_until
from bench.report import Report, Table
from bench.scenarios import failover
from bench.stats import percentile
from bench.tools import find_tool

DESCRIPTION = "issue 11's balancing cases: each endpoint's share, p50/p99; Tulle vs HAProxy, nginx"
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "tulle")

READY_SECONDS = 15.0
LEAD_SECONDS = 0.5  # the generator starts this long after it is launched


@dataclass(frozen=True)
class Variant:
    """One balancer: a peer and its balancing setting."""

    name: str
    peer: str  # haproxy, nginx or tulle
    mode: str  # HAProxy's balance, nginx's upstream directive, Tulle's algorithm ("" default)


VARIANTS: tuple[Variant, ...] = (
    Variant("tulle (default: expected-latency)", "tulle", ""),
    Variant("tulle peak-ewma (Linkerd's)", "tulle", "peak-ewma"),
    Variant("tulle least-request", "tulle", "least-request"),
    Variant("haproxy leastconn", "haproxy", "leastconn"),
    Variant("haproxy random(2)", "haproxy", "random(2)"),
    Variant("nginx least_conn", "nginx", "least_conn"),
)


@dataclass(frozen=True)
class Case:
    """One case: its endpoints (ports filled in when it runs), load and what to show."""

    name: str
    title: str
    profiles: tuple[Profile, ...]
    rate: int
    seconds: float
    joiner: str | None = None  # the endpoint that starts a third of the way in


def _ep(name: str, delay: float, **options: float | int) -> Profile:
    return Profile(name, "127.0.0.1", 0, delay_ms=delay, **options)  # type: ignore[arg-type]


def sweep_profiles(n: int) -> tuple[Profile, ...]:
    """One slow endpoint, n // 3 fast ones failing 5%, the rest fast (case 4)."""
    flaky = n // 3
    return (_ep("slow", 60, jitter=0.3),
            *(_ep(f"flaky{i}", 6, jitter=0.5, fail=0.05) for i in range(1, flaky + 1)),
            *(_ep(f"fast{i}", 6, jitter=0.5) for i in range(1, n - flaky)))


CASES: tuple[Case, ...] = (
    Case("equal-one-at-a-time", "Three equal endpoints, one request at a time (one cold at first)",
         (_ep("a", 1, jitter=0.2), _ep("b", 1, jitter=0.2),
          _ep("c", 1, jitter=0.2, cold_factor=10, cold_seconds=0.2)), rate=50, seconds=12),
    Case("equal-load", "Three equal endpoints, 600 requests/s",
         (_ep("a", 1, jitter=0.5), _ep("b", 1, jitter=0.5), _ep("c", 1, jitter=0.5)),
         rate=600, seconds=10),
    Case("slow-middle", "tulle demo's endpoints: fast, slow, fast failing 5% (50 requests/s)",
         (_ep("fast", 6, jitter=0.5), _ep("slow", 60, jitter=0.3),
          _ep("flaky", 6, jitter=0.5, fail=0.05)), rate=50, seconds=30),
    Case("failures", "Three fast endpoints: one failing 5%, one failing 25% (300 requests/s)",
         (_ep("ok", 2, jitter=0.5), _ep("fail5", 2, jitter=0.5, fail=0.05),
          _ep("fail25", 2, jitter=0.5, fail=0.25)), rate=300, seconds=10),
    Case("new-endpoint", "Two busy endpoints; a third starts at 1/3 of the run, 10× slower "
                         "for its first 3 s (300 requests/s)",
         (_ep("old1", 2, jitter=0.3, workers=4), _ep("old2", 2, jitter=0.3, workers=4),
          _ep("new", 2, jitter=0.3, workers=4, cold_factor=10, cold_seconds=3)),
         rate=300, seconds=15, joiner="new"),
    Case("uneven-costs", "Three equal endpoints, one worker each; 1% of requests take 100× "
                         "longer (400 requests/s)",
         tuple(_ep(n, 1, jitter=0.2, workers=1, heavy_share=0.01, heavy_factor=100)
               for n in ("a", "b", "c")), rate=400, seconds=15),
)
SWEEP_SIZES = (2, 5, 10, 20, 50)
SWEEP_SECONDS = 12.0
QUICK_SWEEP_SIZES = (2, 5)


@dataclass(frozen=True)
class Outcome:
    """What one balancer did in one case."""

    records: list[timeline.Record]
    joined_at: float | None = None  # seconds into the run when the joiner was listening

    def shares(self, names: Sequence[str]) -> dict[str, float]:
        """Each endpoint's share of the requests it could have answered (all answers)."""
        counts = Counter(r.backend for r in self.records if r.backend)
        total = sum(counts.values()) or 1
        return {name: counts[name] / total for name in names}

    def latency(self, p: float, since: float = -1.0) -> float | None:
        ok = sorted(r.latency for r in self.records if r.ok and r.offset >= since)
        return percentile(ok, p) if ok else None

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if not r.ok)

    def share_between(self, name: str, start: float, end: float) -> float | None:
        window = [r for r in self.records if start <= r.offset < end and r.backend]
        return (sum(1 for r in window if r.backend == name) / len(window)) if window else None


# ---------------------------------------------------------------- configs (pure)


def haproxy_config(listen_port: int, endpoints: list[str], mode: str, checks: bool) -> str:
    """The bench's HAProxy with ``balance mode``; with ``checks``, the failover
    scenario's active checks, retries and redispatch (so a server that is not up yet
    costs no request)."""
    text = (failover.render_haproxy(listen_port, endpoints) if checks
            else peers.render_haproxy(listen_port, endpoints))
    return failover.replace_once(text, "    balance roundrobin\n", f"    balance {mode}\n")


def nginx_config(workdir: Path, listen_port: int, endpoints: list[str], mode: str,
                 checks: bool) -> str:
    """The bench's nginx with ``mode;`` in the upstream; with ``checks``, the failover
    scenario's passive failure handling."""
    text = (failover.render_nginx(workdir, listen_port, endpoints) if checks
            else peers.render_nginx_proxy(workdir, listen_port, endpoints))
    return failover.replace_once(text, "    upstream backends {\n",
                                 f"    upstream backends {{\n        {mode};\n")


def tulle_manifest(endpoints: list[str], algorithm: str) -> str:
    """The bench's MeshService; no ``loadBalancer`` at all for the default."""
    text = peers.render_tulle_manifest(endpoints)
    return text + (f"  loadBalancer: {{algorithm: {algorithm}}}\n" if algorithm else "")


# ---------------------------------------------------------------- running


def run(harness: Harness, quick: bool) -> Report:
    variants = [v for v in VARIANTS if v.peer in harness.peer_names]
    scale = 0.25 if quick else 1.0
    report = Report(
        scenario="balancing",
        title="Balancing: Tulle's default beside HAProxy and nginx, case by case (issue 11)",
        description=(__doc__ or DESCRIPTION).split("\n\n", 1)[1].strip(),
    )
    for case in CASES:
        case = replace(case, seconds=max(3.0, case.seconds * scale))
        outcomes = {v.name: run_case(harness, case, v) for v in variants}
        report.tables.append(case_table(case, outcomes))
    sweep: dict[int, dict[str, Outcome]] = {}
    for n in (QUICK_SWEEP_SIZES if quick else SWEEP_SIZES):
        case = Case(f"slow-among-{n}", f"one slow among {n}", sweep_profiles(n),
                    rate=20 * n, seconds=max(3.0, SWEEP_SECONDS * scale))
        sweep[n] = {v.name: run_case(harness, case, v) for v in variants}
    report.tables.append(sweep_table(sweep))
    harness.results_dir.mkdir(parents=True, exist_ok=True)
    image = harness.results_dir / "balancing.png"
    plot(image, report.title, sweep)
    report.images.append(image.name)
    report.notes += [
        "Every balancer starts fresh for every case and is measured from its first "
        "request (no warm-up): the shares include what it takes to learn.",
        "Shares are of the requests an endpoint answered (500s included); p50/p99 are "
        "over successful requests, nearest rank; 'failed' counts 5xx and requests with "
        "no answer.",
        "The proxy under test is pinned to one CPU, backends and load generator to the "
        "other; compare ratios, the machine is shared. bench/results/simulate_lb.md runs "
        "the same cases at 100 proxies × 50 endpoints.",
    ]
    return report


def run_case(harness: Harness, case: Case, variant: Variant) -> Outcome:
    """Fresh backends and a fresh proxy, one measured run of ``case``."""
    ports = free_ports(len(case.profiles))
    profiles = [replace(p, port=port) for p, port in zip(case.profiles, ports, strict=True)]
    tag = f"{case.name}-{variant.peer}-{variant.mode or 'default'}".replace("(", "").replace(
        ")", "")
    present = [p for p in profiles if p.name != case.joiner]
    backends = _start_backends(harness, present, f"backends-{tag}")
    peer = _start_peer(harness, variant, [p.address for p in profiles],
                       checks=case.joiner is not None, tag=tag)
    try:
        records_path = harness.workdir / f"records-{tag}.csv"
        start_at = time.monotonic() + LEAD_SECONDS
        generator = harness.group.start(
            f"load-{tag}", failover.generator_argv(peer, case.rate, case.seconds, start_at,
                                                   records_path), harness.pinning.others)
        joined_at = None
        if case.joiner is not None:
            time.sleep(max(0.0, start_at + case.seconds / 3 - time.monotonic()))
            joiner = next(p for p in profiles if p.name == case.joiner)
            _start_backends(harness, [joiner], f"joiner-{tag}")
            joined_at = time.monotonic() - start_at
        failover.wait_generator(harness, generator, start_at + case.seconds)
        harness.check_alive(peer)
        outcome = Outcome(timeline.read_records(records_path), joined_at)
    finally:
        if peer.process is not None:
            harness.group.stop(peer.process)
        for process in backends:
            harness.group.stop(process)
    harness.log(f"{case.name}: {variant.name}: shares "
                + " ".join(f"{k} {v:.1%}" for k, v in
                           outcome.shares([p.name for p in profiles]).items()))
    return outcome


def _start_backends(harness: Harness, profiles: list[Profile], name: str) -> list[Started]:
    argv = [sys.executable, "-m", "bench.backends_mixed"]
    for profile in profiles:
        argv += ["--listen", profile.spec()]
    process = harness.group.start(name, argv, harness.pinning.others)
    for profile in profiles:
        if not wait_until(lambda p=profile: _accepts(p.port) or process.popen.poll() is not None,
                          READY_SECONDS) or process.popen.poll() is not None:
            raise peers.PeerFailed(f"{name} did not listen on {profile.address}:\n"
                                   + process.log_tail())
    return [process]


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _start_peer(harness: Harness, variant: Variant, endpoints: list[str], checks: bool,
                tag: str) -> peers.Peer:
    (port,) = free_ports(1)
    workdir = harness.workdir / f"peer-{tag}"
    workdir.mkdir()
    if variant.peer == "haproxy":
        conf = workdir / "haproxy.cfg"
        conf.write_text(haproxy_config(port, endpoints, variant.mode, checks))
        argv = [find_tool("haproxy"), "-f", str(conf), "-db"]
    elif variant.peer == "nginx":
        (workdir / "nginx.tmp").mkdir()
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_config(workdir, port, endpoints, variant.mode, checks))
        argv = [find_tool("nginx"), "-p", str(workdir), "-c", str(conf),
                "-e", str(workdir / "nginx.error.log")]  # fmt: skip
    else:
        (workdir / "bench.yaml").write_text(tulle_manifest(endpoints, variant.mode))
        (admin,) = free_ports(1)
        argv = [find_tool("tulle"), "proxy", "-f", str(workdir),
                "--outbound", f"127.0.0.1:{port}", "--inbound", "off",
                "--admin", f"127.0.0.1:{admin}"]  # fmt: skip
    process = harness.group.start(f"{variant.peer}-{tag}", argv, harness.pinning.proxy)
    if not wait_until(lambda: _answers(port) or process.popen.poll() is not None,
                      READY_SECONDS) or process.popen.poll() is not None:
        raise peers.PeerFailed(f"{variant.name} did not answer through 127.0.0.1:{port}:\n"
                               + process.log_tail())
    return peers.Peer(variant.name, "127.0.0.1", port, process)


def _answers(port: int) -> bool:
    """Whether ``GET /`` with the bench's Host got an answer from a backend (any status:
    some of them fail on purpose)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Host": peers.SERVICE_HOST})
        response = conn.getresponse()
        response.read()
        return response.getheader(HEADER) is not None
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


# ---------------------------------------------------------------- the report


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def case_table(case: Case, outcomes: dict[str, Outcome]) -> Table:
    names = [p.name for p in case.profiles]
    columns = ["balancer", "p50 ms", "p99 ms", "failed"] + [f"share {n}" for n in names]
    if case.joiner is not None:
        columns += ["new: first 1 s", "next 2 s", "then", "p99 after it starts ms"]
    table = Table(title=f"{case.name}: {case.title}", columns=columns)
    for name, outcome in outcomes.items():
        shares = outcome.shares(names)
        row = [name, _ms(outcome.latency(50)), _ms(outcome.latency(99)), str(outcome.failed),
               *(_share(shares[n]) for n in names)]
        if case.joiner is not None and outcome.joined_at is not None:
            at = outcome.joined_at
            row += [_share(outcome.share_between(case.joiner, at, at + 1)),
                    _share(outcome.share_between(case.joiner, at + 1, at + 3)),
                    _share(outcome.share_between(case.joiner, at + 3, case.seconds)),
                    _ms(outcome.latency(99, since=at))]
        table.rows.append(row)
    table.note = (f"{case.rate} requests/s for {case.seconds:g} s, from each balancer's "
                  "first request. Endpoints: "
                  + "; ".join(describe(p) for p in case.profiles) + ".")
    return table


def describe(profile: Profile) -> str:
    """``fast: 6 ms ±50%, fails 5%`` and so on."""
    parts = [f"{profile.delay_ms:g} ms" + (f" ±{profile.jitter:.0%}" if profile.jitter else "")]
    if profile.fail:
        parts.append(f"fails {profile.fail:.0%}")
    if profile.workers:
        parts.append(f"{profile.workers} worker{'s' if profile.workers > 1 else ''}")
    if profile.heavy_share:
        parts.append(f"{profile.heavy_share:.0%} of requests ×{profile.heavy_factor:g}")
    if profile.cold_seconds:
        parts.append(f"×{profile.cold_factor:g} for its first {profile.cold_seconds:g} s")
    return f"{profile.name}: " + ", ".join(parts)


def sweep_table(sweep: dict[int, dict[str, Outcome]]) -> Table:
    variants = list(next(iter(sweep.values())))
    table = Table(title="slow-among-N: the ~60 ms endpoint's share (client p99 ms)",
                  columns=["N", *variants])
    for n, outcomes in sweep.items():
        table.rows.append([str(n), *(
            f"{o.shares(['slow'])['slow']:.1%} ({_ms(o.latency(99))})" for o in outcomes.values()
        )])
    table.note = ("N endpoints: one ~60 ms, N // 3 at ~6 ms failing 5%, the rest ~6 ms; "
                  f"20 requests/s per endpoint for {SWEEP_SECONDS:g} s. Round-robin would "
                  "give the slow one 1/N.")
    return table


def plot(path: Path, title: str, sweep: dict[int, dict[str, Outcome]]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    sizes = list(sweep)
    for variant in next(iter(sweep.values())):
        shares = [max(sweep[n][variant].shares(["slow"])["slow"], 1e-4) * 100 for n in sizes]
        style = "-" if variant.startswith("tulle") else "--"
        ax.plot(sizes, shares, style, marker="o", label=variant)
    ax.plot(sizes, [100 / n for n in sizes], ":", color="black", label="1/N (round-robin)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("endpoints (N)")
    ax.set_ylabel("slow endpoint's share of requests (%, log)")
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

