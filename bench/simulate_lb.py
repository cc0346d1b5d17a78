"""Discrete-event simulation of many proxies balancing over many endpoints.

Runs every algorithm of :mod:`tulle.balance` — the real classes, made by
``new_balancer`` from real settings, on a fake clock — against the same
workload, so that algorithms are compared at scales (100 proxies, 50 endpoints,
a million requests) and failure patterns no laptop can run on sockets.

The model, kept simple on purpose:

- **Endpoints** are FCFS queues with ``workers`` parallel servers each (a busy
  server is a busy worker thread of the app). Service times are log-normal around
  an endpoint's own median; a few endpoints are slow, and some fail for a stretch
  of the run (they answer errors fast — the case that lures naive least-latency
  balancers).
- **Proxies** each have their own balancer and their own view of the endpoints
  (own ``in_flight`` counts, own latency estimates), exactly as separate proxy
  processes would; they share only the endpoints' queues.
- **Load** is Poisson at a fixed total rate, each request arriving at a random
  proxy with a random user key (Zipf-like, for ring-hash).
- Latency is what the client sees: queueing plus service at the endpoint (the
  proxies add nothing). Every response is reported to the balancer that placed it
  when it completes, in time order, with ``in_flight`` kept like the proxy does.

The workload is generated from a seed once per algorithm, so every algorithm sees
the same arrivals and the same service-time draws (a request's draws do not
depend on where it went). Output: p50/p99/p99.9, error rate and load imbalance
(max ÷ mean endpoint utilisation) per algorithm; ``--write`` writes
``bench/results/simulate_lb.md`` and a plot.

``python -m bench.simulate_lb [--requests N] [--proxies P] [--endpoints E] [--write]``
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tulle.balance
from bench.stats import LatencySummary
from tulle.balance import ALGORITHMS, Balancer, new_balancer
from tulle.config import LoadBalancer

RESULTS = Path(__file__).resolve().parent / "results"
SLOW_FACTOR = 5.0  # how much slower the slow endpoints are
# The first tenth of the requests is left out of the figures: every balancer starts
# knowing nothing (peak-EWMA at its 30 ms default), and the run should show the
# steady state, not the first second.
WARMUP = 0.1


@dataclass(frozen=True)
class Workload:
    """What is simulated; every algorithm runs the same one."""

    proxies: int = 100
    endpoints: int = 50
    requests: int = 200_000
    workers: int = 2  # parallel requests an endpoint serves; more wait in its queue
    utilisation: float = 0.6  # offered load ÷ total capacity of the healthy endpoints
    rate: float | None = None  # requests/s; overrides utilisation
    median_ms: tuple[float, float] = (2.0, 10.0)  # endpoints' medians spread over this range
    slow_fraction: float = 0.1  # this share of endpoints is 5× slower
    sigma: float = 0.5  # log-normal shape of service times
    failing_fraction: float = 0.1  # this share fails (fast errors) for the middle third
    # Fixed extra latency per endpoint, added after service without holding a worker
    # (the bench backend's --delay-ms is an asynchronous sleep, like this).
    extra_delay_ms: tuple[float, ...] = ()
    users: int = 10_000
    seed: int = 1


@dataclass(eq=False)
class SimEndpoint:
    """One proxy's view of an endpoint (what a balancer reads)."""

    address: str
    index: int
    weight: int = 1
    zone: str | None = None
    in_flight: int = 0


@dataclass
class SimRequest:
    client_ip: bytes
    headers: dict[bytes, bytes] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


@dataclass(frozen=True)
class Result:
    algorithm: str
    latency: LatencySummary
    errors: float  # share of requests answered with an error
    imbalance: float  # max ÷ mean utilisation over endpoints that did not fail
    seconds: float  # wall time of the run


class Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _endpoint_medians(w: Workload, rng: random.Random) -> list[float]:
    low, high = w.median_ms
    medians = [rng.uniform(low, high) / 1000 for _ in range(w.endpoints)]
    for i in rng.sample(range(w.endpoints), round(w.slow_fraction * w.endpoints)):
        medians[i] *= SLOW_FACTOR
    return medians


def simulate(algorithm: str, w: Workload, settings: dict[str, object] | None = None) -> Result:
    """Run ``w`` through ``algorithm`` (a name in ALGORITHMS) and summarise."""
    started = time.perf_counter()
    rng = random.Random(w.seed)
    medians = _endpoint_medians(w, rng)
    failing = set(rng.sample(range(w.endpoints), round(w.failing_fraction * w.endpoints)))
    extra = list(w.extra_delay_ms) + [0.0] * (w.endpoints - len(w.extra_delay_ms))
    # Capacity of the endpoints that never fail, in requests/s (log-normal mean).
    mean_factor = math.exp(w.sigma**2 / 2)
    capacity = sum(w.workers / (m * mean_factor) for i, m in enumerate(medians) if i not in failing)
    rate = w.rate or w.utilisation * capacity
    fail_from, fail_until = w.requests / rate / 3, 2 * w.requests / rate / 3

    clock = Clock()
    tulle.balance.default_rng.seed(w.seed + 1)
    lb = LoadBalancer.model_validate({"algorithm": algorithm, **(settings or {})})
    views: list[list[SimEndpoint]] = []
    balancers: list[Balancer[SimEndpoint]] = []
    for _ in range(w.proxies):
        view = [SimEndpoint(f"10.1.{i // 250}.{i % 250}:8080", i) for i in range(w.endpoints)]
        balancer: Balancer[SimEndpoint] = new_balancer(lb, clock=clock, local_zone=None)
        balancer.update(view)
        views.append(view)
        balancers.append(balancer)

    free_at = [[0.0] * w.workers for _ in range(w.endpoints)]  # per endpoint, a heap
    busy = [0.0] * w.endpoints
    pending: list[tuple[float, int, int, SimEndpoint, float, bool]] = []
    latencies: list[float] = []
    errors = 0
    draws = random.Random(w.seed + 2)  # the workload's own stream: same for every algorithm
    now = 0.0
    warmup = int(WARMUP * w.requests)
    for n in range(w.requests):
        now += draws.expovariate(rate)
        proxy = int(draws.random() * w.proxies)
        user = min(int(draws.paretovariate(1.2)), w.users)
        service_draw = draws.lognormvariate(0.0, w.sigma)
        while pending and pending[0][0] <= now:
            done_at, _, p, endpoint, latency, ok = heapq.heappop(pending)
            clock.now = done_at
            endpoint.in_flight -= 1
            balancers[p].on_response(endpoint, latency, ok)
        clock.now = now
        chosen = balancers[proxy].pick(SimRequest(b"user-%d" % user))
        assert chosen is not None
        i = chosen.index
        chosen.in_flight += 1
        if i in failing and fail_from <= now < fail_until:
            latency, ok = 0.0005, False  # refused fast, like a crashed app behind a sidecar
        else:
            service = medians[i] * service_draw
            start = max(now, heapq.heappop(free_at[i]))
            heapq.heappush(free_at[i], start + service)
            busy[i] += service
            latency, ok = start + service - now + extra[i] / 1000, True
        if n >= warmup:
            errors += not ok
            latencies.append(latency)
        heapq.heappush(pending, (now + latency, n, proxy, chosen, latency, ok))
    duration = now
    healthy_busy = [
        busy[i] / (w.workers * duration) for i in range(w.endpoints) if i not in failing
    ]
    mean_busy = sum(healthy_busy) / len(healthy_busy)
    return Result(
        algorithm=algorithm,
        latency=LatencySummary.of(latencies),
        errors=errors / len(latencies),
        imbalance=max(healthy_busy) / mean_busy if mean_busy else 0.0,
        seconds=time.perf_counter() - started,
    )


def run_all(w: Workload, algorithms: Sequence[str] = tuple(ALGORITHMS)) -> list[Result]:
    results = []
    for algorithm in algorithms:
        result = simulate(algorithm, w)
        print(
            f"[simulate_lb] {algorithm}: p99 {result.latency.p99 * 1000:.1f} ms "
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


# The slow_endpoint scenario: 1,000 requests/s, three endpoints at ~0.3 ms (what a
# loopback backend takes), one of them +50 ms.
SMALL = Workload(proxies=1, endpoints=3, requests=60_000, workers=8, rate=1000.0,
                 median_ms=(0.3, 0.3), slow_fraction=0.0, sigma=0.3, failing_fraction=0.0,
                 extra_delay_ms=(0.0, 0.0, 50.0))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate_lb", description=__doc__)
    parser.add_argument("--requests", type=int, default=Workload.requests)
    parser.add_argument("--proxies", type=int, default=Workload.proxies)
    parser.add_argument("--endpoints", type=int, default=Workload.endpoints)
    parser.add_argument("--seed", type=int, default=Workload.seed)
    parser.add_argument("--small-requests", type=int, default=SMALL.requests)
    parser.add_argument(
        "--write",
        action="store_true",
        help="write bench/results/simulate_lb.md and simulate_lb.png",
    )
    args = parser.parse_args(argv)
    big = Workload(
        proxies=args.proxies, endpoints=args.endpoints, requests=args.requests, seed=args.seed
    )
    small = Workload(**{**SMALL.__dict__, "requests": args.small_requests, "seed": args.seed})
    big_results = run_all(big)
    small_results = run_all(small)
    print(table(big_results))
    print(table(small_results))
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot(
            big_results,
            RESULTS / "simulate_lb.png",
            f"{big.proxies} proxies, {big.endpoints} endpoints, {big.requests:,} requests",
        )
        (RESULTS / "simulate_lb.md").write_text(report(big, big_results, small, small_results))
    return 0


def report(
    big: Workload, big_results: Sequence[Result], small: Workload, small_results: Sequence[Result]
) -> str:
    return f"""# Simulation: every Tulle balancer, many proxies, many endpoints

`bench/simulate_lb.py` — a discrete-event simulation running the real
`tulle.balance` classes on a fake clock (see the module note for the model).

## {big.proxies} proxies, {big.endpoints} endpoints, {big.requests:,} requests

Endpoints: {big.workers} workers each, service-time medians spread over
{big.median_ms[0]:g}–{big.median_ms[1]:g} ms (log-normal, σ = {big.sigma}),
{big.slow_fraction:.0%} of them {SLOW_FACTOR:g}× slower; {big.failing_fraction:.0%} of them answer
every request with a fast error during the middle third of the run. Poisson
arrivals at {big.utilisation:.0%} of the healthy endpoints' capacity, spread
over the proxies at random; seed {big.seed}.

{table(big_results)}
The first {WARMUP:.0%} of the requests are left out (warm-up). Latency counts
failed requests too (they are fast). Imbalance is over endpoints
that never fail: the busiest endpoint's utilisation ÷ the mean.

![simulate_lb](simulate_lb.png)

## The small case: the `slow_endpoint` scenario, simulated

One proxy, three endpoints answering in ~{small.median_ms[0]:g} ms, the third
{small.extra_delay_ms[-1]:g} ms later; {small.requests:,} requests at
{small.rate:,.0f}/s. Compare with
`bench/results/slow_endpoint.md` (real sockets): the simulation has no proxy
overhead and no client-side effects, so absolute numbers are lower; the order of
the algorithms and which ones keep the 50 ms endpoint out of the p99 should match.

{table(small_results)}
Rerun: `.venv/bin/python -m bench.simulate_lb --requests {big.requests} --write`
"""


if __name__ == "__main__":
    sys.exit(main())
