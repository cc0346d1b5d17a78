"""Discrete-event simulation of many proxies balancing over many endpoints.

Runs the balancers of :mod:`tulle.balance` — the real classes, made by
``new_balancer`` from real settings, on a fake clock — and the real circuit breaker
(:class:`tulle.resilience.CircuitBreaker`, the proxy's default of 7 consecutive
failures) against the same workload, so that algorithms are compared at scales
(100 proxies, 50 endpoints, a million requests) and failure patterns no laptop can
run on sockets. Every case of the balancing suite (``bench/scenarios/balancing.py``,
issue 11) runs here too, at one proxy and at fleet scale, where herd effects show.

The model, kept simple on purpose:

- **Endpoints** (:class:`Profile`) are FCFS queues with ``workers`` parallel servers
  each (a busy server is a busy worker thread of the app), or, with ``workers=0``, an
  asynchronous app that serves any number at once (like the bench's
  ``backends_slow``). Service times are log-normal around an endpoint's own median;
  an endpoint may fail a share of its requests (after serving them, like a 500), fail
  every request fast during a window of the run (like a crashed app behind a
  sidecar: refused at once), degrade (its service time grows linearly over the
  run), join the set part-way through, and start cold (slower at first).
- **Requests** may be heavy: a share of them take ``heavy_factor`` times as long
  wherever they go (uneven request costs on one path, linkerd2 #11043).
- **Proxies** each have their own balancer, their own circuit breakers and their own
  view of the endpoints (own ``in_flight`` counts, own estimates), exactly as separate
  proxy processes would; they share only the endpoints' queues. As in the proxy, a
  breaker that opens takes the endpoint out of its proxy's set (``update``) and a
  probe puts it back.
- **Load** is Poisson at a fixed total rate, each request arriving at a random
  proxy. Latency is what the client sees: queueing plus service at the endpoint (the
  proxies add nothing, and do not retry). Every response is reported to the balancer
  and the breaker that placed it when it completes, in time order, as the proxy does.

The workload is generated from a seed once per algorithm, so every algorithm sees
the same arrivals and the same per-request draws (a request's draws do not depend on
where it went). Besides Tulle's algorithms, ``least-connections`` models HAProxy's
``leastconn`` and nginx's ``least_conn`` (fewest requests in flight, ties in turn);
Tulle's ``least-request`` is HAProxy's ``random(2)`` (two random, fewer in flight).

``python -m bench.simulate_lb [--requests N] [--proxies P] [--endpoints E] [--write]``
writes ``bench/results/simulate_lb.md`` and a plot with ``--write``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tulle.balance
from bench.stats import LatencySummary
from tulle.balance import ALGORITHMS, Balancer, Pickable, RequestView, new_balancer
from tulle.config import LoadBalancer
from tulle.resilience import CircuitBreaker

RESULTS = Path(__file__).resolve().parent / "results"
# The proxy's default circuit breaker (DESIGN.md "Defaults").
BREAKER_FAILURES, BREAKER_MIN, BREAKER_MAX = 7, 1.0, 60.0
# How long a request to an endpoint that fails fast takes (a refused connection).
FAST_FAILURE = 0.0005


@dataclass(frozen=True)
class Profile:
    """How one endpoint behaves (times in seconds; ``*_at`` as fractions of the run)."""

    median: float
    workers: int = 2  # parallel requests served; 0: any number (asynchronous, no queue)
    extra: float = 0.0  # fixed delay after service that holds no worker (an async sleep)
    fail_rate: float = 0.0  # share of requests answered with an error after service
    fail_window: tuple[float, float] | None = None  # every request fails fast in between
    degrade_to: float = 1.0  # service time × this by the end of the run, linearly
    join_at: float = 0.0  # joins the endpoint set this far into the run
    cold_factor: float = 1.0  # after joining, service time starts this many times longer
    cold_seconds: float = 0.0  # and warms up linearly over this long
    weight: int = 1


@dataclass(frozen=True)
class Workload:
    """What is simulated; every algorithm runs the same one."""

    profiles: tuple[Profile, ...]
    proxies: int = 100
    requests: int = 200_000
    utilisation: float = 0.6  # offered load ÷ capacity of the endpoints with workers
    rate: float | None = None  # requests/s; overrides utilisation (needed if all are async)
    sigma: float = 0.5  # log-normal shape of service times
    heavy_share: float = 0.0  # share of requests that are heavy
    heavy_factor: float = 100.0  # how much longer a heavy request takes
    breaker: bool = True
    warmup: float = 0.1  # this first share of the requests is left out of the figures
    seed: int = 1

    def capacity(self) -> float:
        """Requests/s the endpoints with workers serve at full utilisation."""
        mean_factor = math.exp(self.sigma**2 / 2) * (1 + self.heavy_share * (self.heavy_factor - 1))
        return sum(p.workers / (p.median * mean_factor) for p in self.profiles if p.workers)

    def offered_rate(self) -> float:
        if self.rate is not None:
            return self.rate
        return self.utilisation * self.capacity()


class SimEndpoint(Pickable):
    """One proxy's view of an endpoint (what a balancer reads), and which endpoint of
    the workload it is."""

    def __init__(self, address: str, index: int, weight: int = 1) -> None:
        super().__init__(address, weight)
        self.index = index


@dataclass
class SimRequest:
    client_ip: bytes
    headers: dict[bytes, bytes] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


NO_HEADERS = SimRequest(b"10.0.0.1")


@dataclass(frozen=True)
class Result:
    algorithm: str
    latency: LatencySummary
    errors: float  # share of requests answered with an error (or with no endpoint)
    shares: tuple[float, ...]  # per endpoint: its share of the requests
    utilisation: tuple[float | None, ...]  # per endpoint: busy ÷ capacity (None if async)
    imbalance: float  # max ÷ mean utilisation over endpoints with workers that never fail
    seconds: float  # wall time of the run
    after_join: LatencySummary | None = None  # requests that arrived after a join
    newcomer_shares: tuple[float, ...] = ()  # a newcomer's share, per second after joining


class Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class LeastConnections(Balancer[SimEndpoint]):
    """A model of HAProxy ``leastconn`` and nginx ``least_conn``: the endpoint with the
    fewest requests in flight per unit of weight; ties in turn (both documentations:
    round-robin within servers of equal load)."""

    def __init__(self) -> None:
        self._endpoints: tuple[SimEndpoint, ...] = ()
        self._next = 0

    def update(self, endpoints: Sequence[SimEndpoint]) -> None:
        self._endpoints = tuple(endpoints)

    def pick(self, request: RequestView) -> SimEndpoint | None:
        endpoints = self._endpoints
        if not endpoints:
            return None
        n = len(endpoints)
        self._next = (self._next + 1) % n
        best = None
        best_load = math.inf
        for k in range(n):
            endpoint = endpoints[(self._next + k) % n]
            load = endpoint.in_flight / endpoint.weight
            if load < best_load:
                best, best_load = endpoint, load
        return best

    def on_response(self, endpoint: SimEndpoint, latency: float, ok: bool) -> None:
        pass


# Balancers the simulation knows besides Tulle's (name -> factory).
MODELS: dict[str, Callable[[], Any]] = {"least-connections": LeastConnections}


class _Timer:
    """A breaker's scheduled callback (``cancel`` like asyncio's TimerHandle)."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Proxy:
    """One proxy: its balancer, its view of the endpoints and its breakers."""

    def __init__(self, balancer: Balancer[SimEndpoint], view: list[SimEndpoint]) -> None:
        self.balancer = balancer
        self.view = view
        self.breakers: list[CircuitBreaker | None] = [None] * len(view)
        self.joined: list[bool] = [False] * len(view)

    def refresh(self) -> None:
        """The proxy's ``ServiceTarget.refresh``: hand the balancer the pickable set."""
        self.balancer.update([
            e for e, joined, breaker in zip(self.view, self.joined, self.breakers, strict=True)
            if joined and (breaker is None or breaker.admits)
        ])


def _make_balancer(algorithm: str, clock: Clock, settings: dict[str, object]) -> Any:
    if algorithm in MODELS:
        return MODELS[algorithm]()
    lb = LoadBalancer.model_validate({"algorithm": algorithm, **settings})
    return new_balancer(lb, clock=clock, local_zone=None)


def simulate(algorithm: str, w: Workload, settings: dict[str, object] | None = None) -> Result:
    """Run ``w`` through ``algorithm`` (a name in ALGORITHMS or MODELS) and summarise."""
    started = time.perf_counter()
    rate = w.offered_rate()
    duration = w.requests / rate
    profiles = w.profiles
    count = len(profiles)
    clock = Clock()
    tulle.balance.default_rng.seed(w.seed + 1)
    breaker_rng = random.Random(w.seed + 3)
    events: list[tuple[float, int, int, Any]] = []  # (time, sequence, kind, payload)
    sequence = 0

    def schedule(delay: float, callback: Callable[[], None]) -> _Timer:
        nonlocal sequence
        timer = _Timer(callback)
        sequence += 1
        heapq.heappush(events, (clock.now + delay, sequence, TIMER, timer))
        return timer

    proxies: list[_Proxy] = []
    for _ in range(w.proxies):
        view = [SimEndpoint(f"10.1.{i // 250}.{i % 250}:8080", i, weight=p.weight)
                for i, p in enumerate(profiles)]
        proxy = _Proxy(_make_balancer(algorithm, clock, settings or {}), view)
        for i, profile in enumerate(profiles):
            proxy.joined[i] = profile.join_at <= 0.0
            if w.breaker:
                proxy.breakers[i] = CircuitBreaker(
                    BREAKER_FAILURES, BREAKER_MIN, BREAKER_MAX, schedule=schedule,
                    on_change=proxy.refresh, rng=breaker_rng)
        proxy.refresh()
        proxies.append(proxy)
    joins = sorted({p.join_at for p in profiles if p.join_at > 0.0})
    for at in joins:
        sequence += 1
        heapq.heappush(events, (at * duration, sequence, JOIN, at))
    joined_at = [p.join_at * duration for p in profiles]

    free_at = [[0.0] * p.workers for p in profiles]  # per endpoint, a heap of workers
    busy = [0.0] * count
    served = [0] * count
    latencies: list[float] = []
    after_join: list[float] = []
    first_join = joins[0] * duration if joins else math.inf
    newcomer = next((i for i, p in enumerate(profiles) if p.join_at > 0.0), None)
    newcomer_seconds: list[list[int]] = []  # per second after the join: [to newcomer, all]
    errors = 0
    draws = random.Random(w.seed + 2)  # the workload's own stream: same for every algorithm
    warmup = int(w.warmup * w.requests)
    now = 0.0
    for n in range(w.requests):
        now += draws.expovariate(rate)
        proxy = proxies[int(draws.random() * w.proxies)]
        service_draw = draws.lognormvariate(0.0, w.sigma)
        if w.heavy_share and draws.random() < w.heavy_share:
            service_draw *= w.heavy_factor
        fail_draw = draws.random()
        while events and events[0][0] <= now:
            at, _, kind, payload = heapq.heappop(events)
            clock.now = at
            if kind == DONE:
                owner, endpoint, latency, ok, probe = payload
                owner.balancer.on_response(endpoint, latency, ok)
                breaker = owner.breakers[endpoint.index]
                if breaker is not None:
                    breaker.record(ok, probe)
                endpoint.in_flight -= 1
            elif kind == TIMER:
                if not payload.cancelled:
                    payload.callback()
            else:  # JOIN
                for p in proxies:
                    for i, profile in enumerate(profiles):
                        if profile.join_at == payload:
                            p.joined[i] = True
                    p.refresh()
        clock.now = now
        chosen = proxy.balancer.pick(NO_HEADERS)
        if chosen is None:  # nothing pickable: the proxy answers 503 at once
            if n >= warmup:
                errors += 1
                latencies.append(0.0)
            continue
        i = chosen.index
        profile = profiles[i]
        breaker = proxy.breakers[i]
        probe = breaker.on_dispatch() if breaker is not None else False
        chosen.in_flight += 1
        window = profile.fail_window
        if window is not None and window[0] * duration <= now < window[1] * duration:
            latency, ok = FAST_FAILURE, False
        else:
            service = profile.median * service_draw
            if profile.degrade_to != 1.0:
                service *= 1.0 + (profile.degrade_to - 1.0) * now / duration
            if profile.cold_factor != 1.0:
                warm = min(1.0, (now - joined_at[i]) / profile.cold_seconds)
                service *= profile.cold_factor + (1.0 - profile.cold_factor) * warm
            start = now
            if profile.workers:
                start = max(now, heapq.heappop(free_at[i]))
                heapq.heappush(free_at[i], start + service)
            busy[i] += service
            latency = start + service - now + profile.extra
            ok = fail_draw >= profile.fail_rate
        if n >= warmup:
            errors += not ok
            latencies.append(latency)
            served[i] += 1
        if now >= first_join:
            after_join.append(latency)
            second = int(now - first_join)
            while len(newcomer_seconds) <= second:
                newcomer_seconds.append([0, 0])
            newcomer_seconds[second][1] += 1
            newcomer_seconds[second][0] += i == newcomer
        sequence += 1
        heapq.heappush(events, (now + latency, sequence, DONE, (proxy, chosen, latency, ok, probe)))
    measured = sum(served) or 1
    utilisation = tuple(
        busy[i] / (p.workers * duration) if p.workers else None for i, p in enumerate(profiles))
    steady = [u for u, p in zip(utilisation, profiles, strict=True)
              if u is not None and p.fail_window is None and p.join_at == 0.0]
    mean_busy = sum(steady) / len(steady) if steady else 0.0
    return Result(
        algorithm=algorithm,
        latency=LatencySummary.of(latencies),
        errors=errors / len(latencies),
        shares=tuple(s / measured for s in served),
        utilisation=utilisation,
        imbalance=max(steady) / mean_busy if mean_busy else 0.0,
        seconds=time.perf_counter() - started,
        after_join=LatencySummary.of(after_join) if after_join else None,
        newcomer_shares=tuple(a / t for a, t in newcomer_seconds if t),
    )


DONE, TIMER, JOIN = 0, 1, 2


# ---------------------------------------------------------------- workloads


def fleet(proxies: int = 100, endpoints: int = 50, requests: int = 200_000,
          seed: int = 1) -> Workload:
    """The general fleet: medians spread over 2–10 ms, 2 workers each, 10% of endpoints
    5× slower, 10% failing fast for the middle third of the run; 60% utilisation."""
    rng = random.Random(seed)
    medians = [rng.uniform(2.0, 10.0) / 1000 for _ in range(endpoints)]
    for i in rng.sample(range(endpoints), round(0.1 * endpoints)):
        medians[i] *= 5.0
    failing = set(rng.sample(range(endpoints), round(0.1 * endpoints)))
    profiles = tuple(Profile(m, fail_window=(1 / 3, 2 / 3) if i in failing else None)
                     for i, m in enumerate(medians))
    return Workload(profiles, proxies=proxies, requests=requests, seed=seed)


def failing_fleet(proxies: int = 100, endpoints: int = 50, requests: int = 200_000,
                  seed: int = 1) -> Workload:
    """Equal endpoints (5 ms, 2 workers): 10% fail every request fast in the middle third,
    another 10% fail 5% of their requests throughout; 60% utilisation."""
    tenth = max(1, endpoints // 10)
    profiles = tuple(
        Profile(0.005, fail_window=(1 / 3, 2 / 3) if i < tenth else None,
                fail_rate=0.05 if tenth <= i < 2 * tenth else 0.0)
        for i in range(endpoints))
    return Workload(profiles, proxies=proxies, requests=requests, seed=seed)


@dataclass(frozen=True)
class Case:
    """One case of the suite: what it shows, its workload, and the figures to report."""

    name: str
    title: str
    workload: Workload
    focus: tuple[int, ...] = ()  # endpoints whose share the table shows
    focus_label: str = ""


FAST, SLOW = 0.006, 0.060  # the demo's endpoints: ~6 ms, ~60 ms
LOOPBACK = 0.0003  # what a loopback backend takes


def cases(requests: int = 200_000, proxies: int = 100, endpoints: int = 50) -> list[Case]:
    """The balancing suite's cases, at one proxy and at fleet scale."""
    third = endpoints // 3
    n_slow = max(1, endpoints // 10)
    small = requests // 10
    return [
        Case("equal-one-at-a-time", "3 equal endpoints, one request at a time (1 proxy)",
             Workload((Profile(LOOPBACK, workers=0),) * 3, proxies=1, rate=20.0,
                      requests=min(small, 6_000), sigma=0.3, warmup=0.0),
             (0, 1, 2), "shares"),
        Case("equal-fleet", f"{endpoints} equal endpoints, {proxies} proxies, 60% busy",
             Workload((Profile(0.005),) * endpoints, proxies=proxies, requests=requests),
             (), ""),
        Case("slow-middle", "fast ~6 ms, slow ~60 ms, fast failing 5% (the demo; 1 proxy)",
             Workload((Profile(FAST, workers=0), Profile(SLOW, workers=0),
                       Profile(FAST, workers=0, fail_rate=0.05)),
                      proxies=1, rate=50.0, requests=min(small, 20_000), sigma=0.3),
             (1, 2), "slow, flaky share"),
        Case("slow-fleet", f"{endpoints} endpoints, {proxies} proxies: a third fail 5%, "
                           f"{n_slow} are 10× slower",
             Workload(tuple(Profile(0.005 * (10 if i < n_slow else 1),
                                    fail_rate=0.05 if n_slow <= i < n_slow + third else 0.0)
                            for i in range(endpoints)),
                      proxies=proxies, requests=requests),
             tuple(range(n_slow)), "slow share (all)"),
        Case("failing-fleet", f"{endpoints} endpoints, {proxies} proxies: 10% fail every "
                              "request fast in the middle third, 10% fail 5%",
             failing_fleet(proxies, endpoints, requests),
             (), ""),
        Case("new-endpoint", "2 busy endpoints, a third joins a third of the way in, 10× "
                             "slower for its first 5 s (1 proxy)",
             Workload((Profile(0.005), Profile(0.005),
                       Profile(0.005, join_at=1 / 3, cold_factor=10.0, cold_seconds=5.0)),
                      proxies=1, rate=400.0, requests=min(small, 12_000)),
             (2,), "newcomer share"),
        Case("new-endpoint-fleet", f"{endpoints - 1} busy endpoints, {proxies} proxies; one "
                                   "joins, 10× slower for its first 5 s",
             Workload((*(Profile(0.005) for _ in range(endpoints - 1)),
                       Profile(0.005, join_at=1 / 3, cold_factor=10.0, cold_seconds=5.0)),
                      proxies=proxies, requests=requests),
             (endpoints - 1,), "newcomer share"),
        Case("uneven-costs", "3 equal endpoints, 1 worker each; 1% of requests take 100× "
                             "longer (1 proxy)",
             Workload((Profile(0.001, workers=1),) * 3, proxies=1, utilisation=0.35,
                      heavy_share=0.01, requests=min(small, 40_000), sigma=0.3),
             (), ""),
        Case("uneven-costs-fleet", f"{endpoints} equal endpoints, 2 workers, {proxies} "
                                   "proxies; 1% of requests 100× longer",
             Workload((Profile(0.001),) * endpoints, proxies=proxies, utilisation=0.5,
                      heavy_share=0.01, requests=requests, sigma=0.3),
             (), ""),
        Case("slow-endpoint", "3 endpoints at ~0.3 ms, one +50 ms, 1,000 requests/s (the "
                              "slow_endpoint scenario, 1 proxy)",
             Workload((Profile(LOOPBACK, workers=8), Profile(LOOPBACK, workers=8),
                       Profile(LOOPBACK, workers=8, extra=0.050)),
                      proxies=1, rate=1000.0, requests=min(small, 30_000), sigma=0.3),
             (2,), "slow share"),
        Case("degrading", "3 endpoints at 1 ms, one degrades to 40 ms over the run, 500 "
                          "requests/s (1 proxy)",
             Workload((Profile(0.001, workers=0), Profile(0.001, workers=0),
                       Profile(0.001, workers=0, degrade_to=40.0)),
                      proxies=1, rate=500.0, requests=min(small, 15_000), sigma=0.3),
             (2,), "degrading share"),
    ]


# The algorithms every case compares: Tulle's default and Linkerd's, then the peers'
# (least-request is HAProxy's random(2); least-connections HAProxy's leastconn and
# nginx's least_conn), and round-robin for scale.
CASE_ALGORITHMS = ("expected-latency", "peak-ewma", "least-request", "least-connections",
                   "round-robin")
SWEEP_SIZES = (2, 3, 5, 10, 20, 50)


def sweep_workload(n: int, requests: int, proxies: int = 1) -> Workload:
    """N endpoints: one ~60 ms, a third (rounded down) fast but failing 5%, the rest ~6 ms;
    about 20 requests/s per endpoint."""
    flaky = n // 3
    profiles = (Profile(SLOW, workers=0),
                *(Profile(FAST, workers=0, fail_rate=0.05) for _ in range(flaky)),
                *(Profile(FAST, workers=0) for _ in range(n - 1 - flaky)))
    return Workload(profiles, proxies=proxies, rate=20.0 * n, requests=requests, sigma=0.3)


def run_all(w: Workload, algorithms: Sequence[str] = tuple(ALGORITHMS),
            label: str = "") -> list[Result]:
    results = []
    for algorithm in algorithms:
        result = simulate(algorithm, w)
        print(
            f"[simulate_lb] {label}{algorithm}: p99 {result.latency.p99 * 1000:.1f} ms "
            f"({result.seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return results


def table(results: Sequence[Result]) -> str:
    lines = [
        "| algorithm | p50 ms | p99 ms | p99.9 ms | errors | imbalance (max/mean util) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s = r.latency
        lines.append(
            f"| {r.algorithm} | {s.p50 * 1000:.2f} | {s.p99 * 1000:.2f} | "
            f"{s.p999 * 1000:.2f} | {r.errors:.2%} | {r.imbalance:.2f} |"
        )
    return "\n".join(lines) + "\n"


def case_table(case: Case, results: Sequence[Result]) -> str:
    """One row per algorithm: latency, errors, and the shares the case is about."""
    extra = ["share spread (max/min)"] if not case.focus else [case.focus_label]
    if case.name.startswith("new-endpoint"):
        extra += ["newcomer share, seconds 1 / 3 / 10", "p99 after join ms"]
    lines = ["| algorithm | p50 ms | p99 ms | errors | " + " | ".join(extra) + " |",
             "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in extra) + " |"]
    for r in results:
        s = r.latency
        if case.focus:
            cells = [" / ".join(f"{r.shares[i]:.1%}" for i in case.focus)
                     if case.focus_label != "slow share (all)"
                     else f"{sum(r.shares[i] for i in case.focus):.2%}"]
        else:
            live = [x for x in r.shares if x > 0]
            cells = [f"{max(live) / min(live):.2f}" if live else "—"]
        if case.name.startswith("new-endpoint"):
            seconds = r.newcomer_shares
            cells.append(" / ".join(f"{seconds[k]:.0%}" if k < len(seconds) else "—"
                                    for k in (0, 2, 9)))
            cells.append(f"{r.after_join.p99 * 1000:.1f}" if r.after_join else "—")
        lines.append(f"| {r.algorithm} | {s.p50 * 1000:.2f} | {s.p99 * 1000:.2f} | "
                     f"{r.errors:.2%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_table(sweep: dict[int, list[Result]]) -> str:
    """Slow endpoint share (and p99) per N, one column per algorithm."""
    algorithms = [r.algorithm for r in next(iter(sweep.values()))]
    lines = ["| N | " + " | ".join(algorithms) + " |",
             "| ---: | " + " | ".join("---:" for _ in algorithms) + " |"]
    for n, results in sweep.items():
        cells = [f"{r.shares[0]:.1%} ({r.latency.p99 * 1000:.0f} ms)" for r in results]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: Sequence[Result], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    names = [r.algorithm for r in results]
    width = 0.27
    for offset, (label, attr) in enumerate((("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"))):
        xs = [i + (offset - 1) * width for i in range(len(names))]
        left.bar(xs, [getattr(r.latency, attr) * 1000 for r in results], width, label=label)
    left.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("latency (ms, log scale)")
    left.legend(fontsize=8)
    left.set_title("latency seen by clients")
    right.bar(names, [r.imbalance for r in results], color="#c44e52")
    right.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    right.set_ylabel("max ÷ mean endpoint utilisation")
    right.set_title("load imbalance (1 = even)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate_lb", description=__doc__)
    parser.add_argument("--requests", type=int, default=Workload.requests)
    parser.add_argument("--proxies", type=int, default=Workload.proxies)
    parser.add_argument("--endpoints", type=int, default=50)
    parser.add_argument("--seed", type=int, default=Workload.seed)
    parser.add_argument("--case", action="append", default=None,
                        help="run only this case (repeat; default: all, and the sweep)")
    parser.add_argument(
        "--write",
        action="store_true",
        help="write bench/results/simulate_lb.md and simulate_lb.png",
    )
    args = parser.parse_args(argv)
    big = fleet(args.proxies, args.endpoints, args.requests, args.seed)
    big_results = run_all(big, label="fleet: ")
    print(table(big_results))
    suite = [c for c in cases(args.requests, args.proxies, args.endpoints)
             if args.case is None or c.name in args.case]
    case_results = []
    for case in suite:
        results = run_all(case.workload, CASE_ALGORITHMS, label=f"{case.name}: ")
        print(f"{case.title}\n{case_table(case, results)}")
        case_results.append((case, results))
    sweep: dict[int, list[Result]] = {}
    if args.case is None:
        for n in SWEEP_SIZES:
            sweep[n] = run_all(sweep_workload(n, args.requests // 20), CASE_ALGORITHMS,
                               label=f"sweep N={n}: ")
        print(sweep_table(sweep))
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot(big_results, RESULTS / "simulate_lb.png",
             f"{args.proxies} proxies, {args.endpoints} endpoints, {args.requests:,} requests")
        (RESULTS / "simulate_lb.md").write_text(
            report(big, big_results, case_results, sweep, args.requests))
    return 0


def report(big: Workload, big_results: Sequence[Result],
           case_results: Sequence[tuple[Case, Sequence[Result]]],
           sweep: dict[int, list[Result]], requests: int) -> str:
    sections = "\n".join(
        f"### {case.name}: {case.title}\n\n{case_table(case, results)}"
        for case, results in case_results)
    sweep_text = (f"""## A slow endpoint among N (1 proxy)

N endpoints answering in ~6 ms (async), a third of them failing 5% of requests, and
one answering in ~60 ms; 20 requests/s per endpoint. The slow endpoint's share
of the requests (and the client p99):

{sweep_table(sweep)}""" if sweep else "")
    return f"""# Simulation: Tulle's balancers, many proxies, many endpoints

`bench/simulate_lb.py` — a discrete-event simulation running the real
`tulle.balance` classes and the proxy's circuit breaker on a fake clock (see the
module note for the model). `least-connections` models HAProxy `leastconn` and
nginx `least_conn`; Tulle's `least-request` is HAProxy `random(2)`.

## The fleet: {big.proxies} proxies, {len(big.profiles)} endpoints, {big.requests:,} requests

Endpoints: 2 workers each, service-time medians spread over 2–10 ms (log-normal,
σ = {big.sigma}), 10% of them 5× slower; 10% of them answer every request with a
fast error during the middle third of the run. Poisson arrivals at
{big.utilisation:.0%} of the endpoints' capacity, spread over the proxies at random;
seed {big.seed}. Every proxy has the default circuit breaker (7 consecutive
failures).

{table(big_results)}
The first {big.warmup:.0%} of the requests are left out (warm-up). Latency counts
failed requests too (they are fast). Imbalance is over endpoints that never fail:
the busiest endpoint's utilisation ÷ the mean.

![simulate_lb](simulate_lb.png)

## The cases of the balancing suite

The same cases as `bench/results/balancing.md` (real sockets), simulated; "1 proxy"
cases mirror the socket runs, the others run at fleet scale.

{sections}
{sweep_text}
Rerun: `.venv/bin/python -m bench.simulate_lb --requests {requests} --write`
"""


if __name__ == "__main__":
    sys.exit(main())
