"""HTTP/2 and gRPC: h2load through Tulle, HAProxy (``proto h2``) and direct, in one run.

Two loads, each on three peers side by side, interleaved over rounds:

- **HTTP/2** — ``h2load -c4 -m32`` (4 connections, 32 streams each) for a 19-byte
  file from nghttpd (h2c, one process, three ports). Tulle serves it as a
  ``protocol: http2`` service; HAProxy with ``proto h2`` on its bind line and on each
  server line (h2c both ways, one thread); direct is h2load against one nghttpd port.
- **gRPC unary** — the same h2load sending a gRPC unary call (``POST
  /bench.Echo/Unary``, ``content-type: application/grpc``, a framed 2-byte message) to
  a grpcio server (``bench/grpc_backend.py``, one process, three ports). Tulle serves
  it as ``protocol: grpc`` (grpc-status read from each response's trailers); HAProxy
  as above.

Reported: requests/s (median over rounds) and its ratio to HAProxy and to direct, mean
latency, failures, and the proxy's CPU per 1,000 requests. The proxy runs on its own
CPU; h2load and the backends share the other.
"""

from __future__ import annotations

import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Harness
from bench.peers import Peer, PeerFailed, start_tulle
from bench.processes import Started, free_ports, wait_until
from bench.report import Report, Table
from bench.stats import median
from bench.tools import find_tool

DESCRIPTION = "HTTP/2 (h2load) and gRPC unary load: Tulle, HAProxy proto h2, direct"
TOOLS: tuple[str, ...] = ("haproxy", "nghttpd", "h2load", "tulle")

PEERS = ("haproxy", "tulle", "direct")
CLIENTS = 4
STREAMS = 32
GRPC_BACKEND = Path(__file__).resolve().parent.parent / "grpc_backend.py"
GRPC_PATH = "/bench.Echo/Unary"
# One gRPC message: not compressed (0), length 2, b"hi" (gRPC's "Length-Prefixed-Message").
GRPC_BODY = b"\x00\x00\x00\x00\x02hi"


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: int
    warmup_seconds: int


FULL = Settings(rounds=3, seconds=10, warmup_seconds=2)
QUICK = Settings(rounds=1, seconds=1, warmup_seconds=0)


@dataclass(frozen=True)
class H2loadResult:
    requests_per_second: float
    succeeded: int
    failed: int
    mean_ms: float


def parse_h2load(text: str) -> H2loadResult:
    """The figures of an h2load run's summary."""
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    if rps is None or counts is None or mean is None:
        raise PeerFailed(f"h2load output not understood:\n{text[-1500:]}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[mean.group(2)]
    return H2loadResult(
        requests_per_second=float(rps.group(1)),
        succeeded=int(counts.group(1)),
        failed=int(counts.group(2)) + int(counts.group(3)),
        mean_ms=float(mean.group(1)) * scale,
    )


def render_haproxy_h2(listen_port: int, endpoints: list[str]) -> str:
    """HAProxy: h2c from the client (``bind … proto h2``) and to each server (``server …
    proto h2``), one thread, round-robin (HAProxy configuration manual, "proto")."""
    servers = "".join(f"    server s{index} {endpoint} proto h2\n"
                      for index, endpoint in enumerate(endpoints, 1))
    return f"""\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always

frontend bench
    bind 127.0.0.1:{listen_port} proto h2
    default_backend backends

backend backends
    balance roundrobin
{servers}"""


def render_tulle_h2(name: str, protocol: str, endpoints: list[str]) -> str:
    lines = "".join(f'    - {{address: "{endpoint}"}}\n' for endpoint in endpoints)
    return (f"apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: {name}}}\n"
            f"spec:\n  protocol: {protocol}\n  loadBalancer: {{algorithm: round-robin}}\n"
            f"  endpoints:\n{lines}")


def run(harness: Harness, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    report = Report(
        scenario="h2",
        title="HTTP/2 and gRPC: h2load through Tulle, HAProxy (proto h2) and direct",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else DESCRIPTION,
    )
    for load in ("http2", "grpc"):
        endpoints = _start_backend(harness, load)
        peers = _start_peers(harness, load, endpoints)
        report.tables.append(_measure(harness, load, peers, settings))
        for peer in peers:
            if peer.process is not None:
                harness.group.stop(peer.process)
    report.notes.append(
        "Where Tulle's time goes: HTTP/2 is the h2 library (pure Python: HPACK, frames, "
        "stream states) on both sides of the proxy. A cProfile of the HTTP/2 load on the "
        "pure-Python package (8,000 requests, h2c both ways) splits the time: h2 36%, "
        "hpack 18% (four header blocks per request: client to proxy to endpoint and "
        "back), hyperframe 10%, Tulle's own code 24% (a third of it the socket writes it "
        "makes), C built-ins 8%, h2's logging calls 3%. What would move it: a compiled "
        "HPACK and frame layer (the libraries compiled with mypyc/Cython, or bindings to "
        "nghttp2) — about two thirds of the time is there; Tulle's own HTTP/2 modules are "
        "compiled with the rest of the hot path already.")
    return report


def _start_backend(harness: Harness, load: str) -> list[str]:
    ports = free_ports(3)
    cpus = harness.pinning.others
    if load == "http2":
        docroot = harness.workdir / "docroot"
        docroot.mkdir(exist_ok=True)
        (docroot / "index.html").write_bytes(b"hello from nghttpd\n")
        for port in ports:  # nghttpd serves one port per process
            started = harness.group.start(
                f"nghttpd-{port}",
                [find_tool("nghttpd"), "--no-tls", "-d", str(docroot), str(port)], cpus)
            _wait_port(started, port)
    else:
        started = harness.group.start(
            "grpc-backend", [sys.executable, str(GRPC_BACKEND), *map(str, ports)], cpus)
        for port in ports:
            _wait_port(started, port)
    return [f"127.0.0.1:{port}" for port in ports]


def _wait_port(process: Started, port: int) -> None:
    import socket

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return process.popen.poll() is not None

    wait_until(listening, 15.0)
    if process.popen.poll() is not None:
        raise PeerFailed(f"backend on {port} exited: {process.log_tail()}")


def _start_peers(harness: Harness, load: str, endpoints: list[str]) -> list[Peer]:
    cpus = harness.pinning.proxy
    peers = []
    (port,) = free_ports(1)
    conf = harness.workdir / f"haproxy-{load}.cfg"
    conf.write_text(render_haproxy_h2(port, endpoints))
    process = harness.group.start(f"haproxy-{load}",
                                  [find_tool("haproxy"), "-f", str(conf), "-db"], cpus)
    peers.append(Peer("haproxy", "127.0.0.1", port, process))
    protocol = "http2" if load == "http2" else "grpc"
    tulle, _ = start_tulle(harness.group, harness.workdir,
                           render_tulle_h2("bench", protocol, endpoints), cpus)
    peers.append(tulle)
    host, direct_port = endpoints[0].split(":")
    peers.append(Peer("direct", host, int(direct_port), None))
    time.sleep(0.5)
    return peers


def _h2load(harness: Harness, peer: Peer, load: str, seconds: int) -> H2loadResult:
    argv = [find_tool("h2load"), "-c", str(CLIENTS), "-m", str(STREAMS), "-t", "1",
            "-D", str(seconds), "-H", ":authority: bench"]
    if load == "grpc":
        body = harness.workdir / "grpc.body"
        body.write_bytes(GRPC_BODY)
        argv += ["-d", str(body), "-H", "content-type: application/grpc",
                 "-H", "te: trailers", f"http://{peer.host}:{peer.port}{GRPC_PATH}"]
    else:
        argv.append(f"http://{peer.host}:{peer.port}/index.html")
    done = harness.group.run(argv, harness.pinning.others, timeout=seconds + 60)
    return parse_h2load(done.stdout.decode())


def _measure(harness: Harness, load: str, peers: list[Peer], settings: Settings) -> Table:
    for peer in peers if settings.warmup_seconds else []:
        _h2load(harness, peer, load, settings.warmup_seconds)
    rps: dict[str, list[float]] = defaultdict(list)
    mean_ms: dict[str, list[float]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    cpu: dict[str, list[float]] = defaultdict(list)
    for round_number in range(1, settings.rounds + 1):
        for peer in peers:
            result, spent = harness.measured(
                peer, lambda p=peer: _h2load(harness, p, load, settings.seconds))
            rps[peer.name].append(result.requests_per_second)
            mean_ms[peer.name].append(result.mean_ms)
            failed[peer.name] += result.failed
            if spent is not None and result.succeeded:
                cpu[peer.name].append(spent / result.succeeded * 1000 * 1000)
            harness.log(f"{load} round {round_number}/{settings.rounds} {peer.name}: "
                        f"{result.requests_per_second:,.0f} req/s")
    best = {name: median(values) for name, values in rps.items()}
    table = Table(
        title=f"{'HTTP/2 (h2load, 19-byte file)' if load == 'http2' else 'gRPC unary (h2load)'}",
        columns=["peer", "requests/s", "× haproxy", "× direct", "mean latency ms",
                 "failed", "proxy CPU ms per 1k requests"],
        note=f"h2load -c{CLIENTS} -m{STREAMS}, {settings.seconds} s × {settings.rounds} "
             "rounds; medians.",
    )
    for peer in peers:
        name = peer.name
        table.rows.append([
            name,
            f"{best[name]:,.0f}",
            f"{best[name] / best['haproxy']:.3f}",
            f"{best[name] / best['direct']:.3f}",
            f"{median(mean_ms[name]):.2f}",
            str(failed[name]),
            f"{median(cpu[name]):.1f}" if cpu[name] else "-",
        ])
    return table
