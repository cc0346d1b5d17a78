"""Failover: one of three endpoints crashes under a fixed load and comes back 10 s later.

Three endpoints, each its own process (``bench/named_backend.py``, the
``backends_slow`` server with delay 0 and an ``X-Bench-Backend`` header naming it).
Each proxy in turn takes 1,000 requests/s for 30 s from an open-loop generator
(``bench/fixed_rate.py``, one record per request, failures included); 10 s in,
endpoint ``b2`` is killed with SIGKILL (a crash: its connections are closed or
reset by the kernel), and 20 s in it is started again on the same port. Reported
per proxy: **failed requests** (refused, reset, no answer within 5 s, or a non-2xx
status), **p99** of the successful requests before (0–10 s), during (10–20 s) and
after (20–30 s) the outage and overall, and **how long after it was listening
again the returned endpoint answered its first request** through the proxy.

- **tulle**: default settings (peak-EWMA, retries of connection failures, resets and gateway
  errors for idempotent methods, circuit breaker after 7 consecutive failures with
  a 1 s → 60 s backoff), no active health checks;
- **haproxy**: ``balance roundrobin``, ``http-reuse always``, active checks
  ``check inter 1s fall 2 rise 1`` (TCP connect), ``retries 2``,
  ``retry-on all-retryable-errors``, ``option redispatch``;
- **nginx**: round-robin, upstream ``keepalive``, ``proxy_next_upstream error timeout``,
  ``max_fails=1 fail_timeout=1s`` (passive: a failed server is skipped for 1 s, then
  tried again with a client request).

Target: Tulle zero failed requests, and fewer than either peer.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench import peers, timeline
from bench.harness import Harness
from bench.load import LoadFailed
from bench.processes import Started, free_ports
from bench.report import Report, Table
from bench.tools import find_tool

DESCRIPTION = (
    "one of three endpoints killed 10 s into 30 s at 1,000 req/s, back at 20 s: "
    "failed requests, p99, time to re-admit"
)
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "tulle")

BACKEND_NAMES = ("b1", "b2", "b3")
KILLED = "b2"
REQUEST_TIMEOUT_SECONDS = 5.0
# The generator is started this long before its first request is due (Python start-up).
LEAD_SECONDS = 1.0
# How often the restarted endpoint is polled (TCP connect, no request) to learn when
# it listens again: the resolution of "time to re-admit".
LISTEN_POLL_SECONDS = 0.005
# nginx: how long a server that failed once is skipped (ngx_http_upstream_module
# "server ... max_fails=1 fail_timeout="), chosen to match HAProxy's 1 s check interval.
NGINX_FAIL_TIMEOUT = "1s"
PEER_ORDER = ("haproxy", "nginx", "tulle")


@dataclass(frozen=True)
class Settings:
    rate: int  # requests/s
    phase_seconds: float  # before the kill, down, after the return
    warmup_seconds: float

    @property
    def seconds(self) -> float:
        return 3 * self.phase_seconds


FULL = Settings(rate=1000, phase_seconds=10.0, warmup_seconds=2.0)
QUICK = Settings(rate=200, phase_seconds=2.0, warmup_seconds=0.5)


@dataclass(frozen=True)
class Outcome:
    """What one proxy's run produced."""

    records: list[timeline.Record]
    killed_at: float  # seconds after the load started
    restarted_at: float  # the new process was started
    listening_at: float  # ... and accepted a connection
    first_answer_at: float | None  # its first successful answer reached the client

    @property
    def readmitted_after(self) -> float | None:
        if self.first_answer_at is None:
            return None
        return self.first_answer_at - self.listening_at


class Endpoints:
    """Endpoint processes, by name; one can be killed and restarted, or frozen and thawed."""

    def __init__(self, harness: Harness, names: tuple[str, ...] = BACKEND_NAMES) -> None:
        self.harness = harness
        self.names = names
        ports = free_ports(len(names))
        self.ports = dict(zip(names, ports, strict=True))
        self.processes: dict[str, Started] = {}
        self.generation = 0
        for name in names:
            self.start(name)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{self.ports[name]}" for name in self.names]

    def start(self, name: str) -> Started:
        port = self.ports[name]
        self.generation += 1
        argv = [sys.executable, "-m", "bench.named_backend",
                "--listen", f"127.0.0.1:{port}", "--name", name]  # fmt: skip
        process = self.harness.group.start(
            f"backend-{name}-{self.generation}", argv, self.harness.pinning.others
        )
        self.processes[name] = process
        return process

    def wait_listening(self, name: str, timeout: float = 10.0) -> None:
        """Return once ``name``'s port accepts a connection (no request is sent)."""
        process, port = self.processes[name], self.ports[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.5),
            ):
                return
            time.sleep(LISTEN_POLL_SECONDS)
        raise peers.PeerFailed(
            f"endpoint {name} did not listen on 127.0.0.1:{port}; last lines of its log:\n"
            + process.log_tail()
        )

    def kill(self, name: str) -> None:
        """SIGKILL: a crash, not a shutdown."""
        process = self.processes[name]
        process.popen.kill()
        process.popen.wait()
        self.harness.group.stop(process)  # already dead: only forgets it

    def freeze(self, name: str) -> None:
        """SIGSTOP: the process stops, its listening socket stays (the kernel still
        accepts connections and buffers requests): a long pause, not a crash."""
        self.processes[name].popen.send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.processes[name].popen.send_signal(signal.SIGCONT)

    def as_backends(self) -> peers.Backends:
        """The ``Backends`` the peer starters take (``process`` is one of several)."""
        return peers.Backends(
            addresses=tuple(("127.0.0.1", self.ports[n]) for n in self.names),
            process=self.processes[self.names[0]],
        )


def run(harness: Harness, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    endpoints = Endpoints(harness)
    for name in BACKEND_NAMES:
        endpoints.wait_listening(name)
    outcomes: dict[str, Outcome] = {}
    for name in [p for p in PEER_ORDER if p in harness.peer_names]:
        peer = START[name](harness, endpoints)
        harness.log(f"{name} is serving; {settings.seconds:g} s at {settings.rate} req/s")
        try:
            load(harness, peer, settings.warmup_seconds, settings.rate, f"{name}-warmup")
            outcomes[name] = run_once(harness, peer, endpoints, settings)
            harness.check_alive(peer)
        finally:
            if peer.process is not None:
                harness.group.stop(peer.process)
        summary = timeline.summarize(outcomes[name].records, 0, settings.seconds)
        harness.log(
            f"{name}: {summary.failures} failed of {summary.requests}, re-admitted after "
            f"{_seconds(outcomes[name].readmitted_after)}"
        )
        time.sleep(0.3)
    return build_report(harness, outcomes, settings)


# ---------------------------------------------------------------- the run


def run_once(
    harness: Harness, peer: peers.Peer, endpoints: Endpoints, settings: Settings
) -> Outcome:
    """One measured run: load, kill ``KILLED`` at 1/3, restart it at 2/3."""
    records_path = harness.workdir / f"records-{peer.name}.csv"
    start_at = time.monotonic() + LEAD_SECONDS
    generator = harness.group.start(
        f"load-{peer.name}",
        generator_argv(peer, settings.rate, settings.seconds, start_at, records_path),
        harness.pinning.others,
    )
    _sleep_until(start_at + settings.phase_seconds)
    endpoints.kill(KILLED)
    killed_at = time.monotonic() - start_at
    _sleep_until(start_at + 2 * settings.phase_seconds)
    restarted_at = time.monotonic() - start_at
    endpoints.start(KILLED)
    endpoints.wait_listening(KILLED)
    listening_at = time.monotonic() - start_at
    wait_generator(harness, generator, start_at + settings.seconds)
    records = timeline.read_records(records_path)
    return Outcome(
        records=records,
        killed_at=killed_at,
        restarted_at=restarted_at,
        listening_at=listening_at,
        first_answer_at=timeline.first_answer_from(records, KILLED, listening_at),
    )


def load(harness: Harness, peer: peers.Peer, seconds: float, rate: int, tag: str) -> None:
    """An unmeasured run of the generator (a warm-up); fails if it fails."""
    out = harness.workdir / f"records-{tag}.csv"
    argv = generator_argv(peer, rate, seconds, time.monotonic() + LEAD_SECONDS, out)
    done = harness.group.run(argv, harness.pinning.others, timeout=LEAD_SECONDS + seconds + 30.0)
    if done.returncode != 0:
        raise LoadFailed(f"fixed_rate exited with {done.returncode}: {done.stderr.decode()}")


def generator_argv(
    peer: peers.Peer, rate: int, seconds: float, start_at: float, out: Path
) -> list[str]:
    """The open-loop generator's command line (shared with the balancing scenario)."""
    return [
        sys.executable, "-m", "bench.fixed_rate", "--url", peer.url,
        "--rate", str(rate), "--seconds", f"{seconds:g}", "--start-at", f"{start_at:.6f}",
        "--timeout", f"{REQUEST_TIMEOUT_SECONDS:g}", "--host-header", peers.SERVICE_HOST,
        "--out", str(out),
    ]  # fmt: skip


def wait_generator(harness: Harness, generator: Started, last_due: float) -> None:
    """Wait for the generator to write its records (and stop it); LoadFailed if it fails."""
    # Its last request may take the whole request timeout; then it writes the CSV.
    budget = last_due - time.monotonic() + REQUEST_TIMEOUT_SECONDS + 30.0
    try:
        code = generator.popen.wait(timeout=max(budget, 1.0))
    except Exception as exc:
        raise LoadFailed(
            f"fixed_rate did not finish; last lines of its log:\n{generator.log_tail()}"
        ) from exc
    harness.group.stop(generator)
    if code != 0:
        raise LoadFailed(f"fixed_rate exited with {code}:\n{generator.log_tail()}")


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


# ---------------------------------------------------------------- the peers


def render_haproxy(listen_port: int, endpoints: list[str]) -> str:
    """HAProxy with active checks, layer-7 retries and redispatch (see module note)."""
    return peers.render_haproxy(
        listen_port,
        endpoints,
        server_options="check inter 1s fall 2 rise 1",
        defaults_extra=("retries 2", "retry-on all-retryable-errors", "option redispatch"),
    )


def render_nginx(workdir: Path, listen_port: int, endpoints: list[str]) -> str:
    """The bench's nginx proxy config plus passive failure handling (see module note)."""
    text = peers.render_nginx_proxy(workdir, listen_port, endpoints)
    for endpoint in endpoints:
        text = replace_once(
            text,
            f"        server {endpoint};\n",
            f"        server {endpoint} max_fails=1 fail_timeout={NGINX_FAIL_TIMEOUT};\n",
        )
    return replace_once(
        text,
        "            proxy_http_version 1.1;\n",
        "            proxy_http_version 1.1;\n            proxy_next_upstream error timeout;\n",
    )


def replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"expected exactly one {old.strip()!r} in the rendered config")
    return text.replace(old, new)


def _start_haproxy(harness: Harness, endpoints: Endpoints) -> peers.Peer:
    (port,) = free_ports(1)
    conf = harness.workdir / "haproxy-failover.cfg"
    conf.write_text(render_haproxy(port, endpoints.addresses))
    process = harness.group.start(
        "haproxy-failover", [find_tool("haproxy"), "-f", str(conf), "-db"],
        harness.pinning.proxy,
    )  # fmt: skip
    peers._wait_serving("haproxy", process, "127.0.0.1", port)
    return peers.Peer("haproxy", "127.0.0.1", port, process)


def _start_nginx(harness: Harness, endpoints: Endpoints) -> peers.Peer:
    (port,) = free_ports(1)
    workdir = harness.workdir / "nginx-failover"
    workdir.mkdir(exist_ok=True)
    (workdir / "nginx.tmp").mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx(workdir, port, endpoints.addresses))
    argv = [find_tool("nginx"), "-p", str(workdir), "-c", str(conf),
            "-e", str(workdir / "nginx.error.log")]  # fmt: skip
    process = harness.group.start("nginx-failover", argv, harness.pinning.proxy)
    peers._wait_serving("nginx", process, "127.0.0.1", port)
    return peers.Peer("nginx", "127.0.0.1", port, process)


def _start_tulle(harness: Harness, endpoints: Endpoints) -> peers.Peer:
    # The bench's own Tulle peer: default settings, a MeshService over the endpoints.
    return peers.start_peer(
        "tulle", harness.group, harness.workdir, endpoints.as_backends(), harness.pinning.proxy
    )


START: dict[str, Callable[[Harness, Endpoints], peers.Peer]] = {
    "haproxy": _start_haproxy,
    "nginx": _start_nginx,
    "tulle": _start_tulle,
}


# ---------------------------------------------------------------- the report


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f}"


def _seconds(value: float | None) -> str:
    return "not within the run" if value is None else f"{value:.2f} s"


def _kinds(kinds: Mapping[str, int]) -> str:
    if not kinds:
        return "—"
    return ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))


def results_table(outcomes: dict[str, Outcome], settings: Settings) -> Table:
    phase = settings.phase_seconds
    table = Table(
        title=(
            f"Failover at {settings.rate:,} requests/s: {KILLED} killed at {phase:g} s, "
            f"back at {2 * phase:g} s"
        ),
        columns=["proxy", "requests", "failed", "failed %", "what failed",
                 f"p99 before (0–{phase:g} s)", f"p99 during ({phase:g}–{2 * phase:g} s)",
                 f"p99 after ({2 * phase:g}–{3 * phase:g} s)", "p99 overall",
                 "max during", "re-admitted after"],
    )  # fmt: skip
    for name, outcome in outcomes.items():
        before = timeline.summarize(outcome.records, 0, phase)
        during = timeline.summarize(outcome.records, phase, 2 * phase)
        after = timeline.summarize(outcome.records, 2 * phase, 3 * phase)
        overall = timeline.summarize(outcome.records, 0, settings.seconds)
        table.rows.append([
            name, f"{overall.requests:,}", str(overall.failures),
            f"{overall.failure_percent:.3f}", _kinds(overall.failure_kinds),
            _ms(before.p99), _ms(during.p99), _ms(after.p99), _ms(overall.p99),
            _ms(during.maximum), _seconds(outcome.readmitted_after),
        ])  # fmt: skip
    table.note = (
        "Latencies in ms, of the successful requests, from when each request was due "
        "(open loop: a late send counts as wait), nearest rank, by the phase the "
        "request was due in. A request failed if it was refused or reset, had no "
        f"answer within {REQUEST_TIMEOUT_SECONDS:g} s, or got a non-2xx status. "
        f"**re-admitted after**: from the moment the restarted {KILLED} accepted "
        "connections again (polled every 5 ms) to the first successful answer from it "
        "(X-Bench-Backend header) reaching the client."
    )
    return table


def events_table(outcomes: dict[str, Outcome]) -> Table:
    table = Table(
        title="When things happened (seconds after the load started)",
        columns=["proxy", f"{KILLED} killed", f"{KILLED} restarted", "listening again",
                 "first answer from it", "its answers in the last phase"],
    )  # fmt: skip
    for name, outcome in outcomes.items():
        served = sum(
            1 for r in outcome.records
            if r.ok and r.backend == KILLED and r.offset >= outcome.listening_at
        )  # fmt: skip
        table.rows.append([
            name, f"{outcome.killed_at:.3f}", f"{outcome.restarted_at:.3f}",
            f"{outcome.listening_at:.3f}",
            "—" if outcome.first_answer_at is None else f"{outcome.first_answer_at:.3f}",
            f"{served:,}",
        ])  # fmt: skip
    return table


def build_report(harness: Harness, outcomes: dict[str, Outcome], settings: Settings) -> Report:
    report = Report(
        scenario="failover",
        title="Failover: one of three endpoints killed and brought back under load",
        description=(__doc__ or DESCRIPTION).split("\n\n", 1)[1].strip(),
    )
    report.tables += [results_table(outcomes, settings), events_table(outcomes)]
    harness.results_dir.mkdir(parents=True, exist_ok=True)
    image = harness.results_dir / "failover.png"
    timelines = [
        timeline.Timeline(
            name=name,
            buckets=timeline.buckets(outcome.records, settings.seconds),
            served_by_killed=timeline.share_per_bucket(outcome.records, KILLED, settings.seconds),
        )
        for name, outcome in outcomes.items()
    ]
    events = {f"{KILLED} killed": settings.phase_seconds,
              f"{KILLED} back": 2 * settings.phase_seconds}  # fmt: skip
    timeline.plot(image, report.title, timelines, events)
    report.images.append(image.name)
    report.notes += [
        "Proxies run one after another, each alone on the proxy CPU, after a "
        f"{settings.warmup_seconds:g} s unmeasured warm-up at the same rate; the same "
        "three endpoint processes serve all of them (the killed one is restarted in "
        "each run).",
        "The generator (bench/fixed_rate.py) and the endpoints share the load CPU. "
        "One run per proxy: on a shared machine a single slow second shows up as a "
        "p99 spike; failure counts and re-admission times are the robust figures.",
        "HAProxy's checks are TCP connects (no `option httpchk`), so they are not "
        "requests and the endpoints do not answer them.",
    ]
    return report
