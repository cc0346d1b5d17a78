"""``python -m bench.tcp_paths``: what protocol detection and opaque TCP cost.

Two revisions of Tulle side by side in one run, interleaved round by round (the
machine is shared: only ratios within a run mean anything):

- ``before``: the commit just before protocol detection landed, and ``after``: the one
  that added it (``--before``/``--after``; both are exported into a temporary folder
  and run with this venv's Python);
- **HTTP/1.1 keep-alive** (``wrk -t1 -c32``) through the outbound listener to nginx:
  detection runs once per connection, so this should not move;
- **a connection per request** (``Connection: close``): what detection adds per
  connection (one more protocol object, one look at the first bytes, a hand-off);
- **opaque TCP** (``after`` only): ``redis-benchmark`` GET/SET with 32 clients, direct
  and through the inbound listener's opaque path, and a bulk 256 MiB transfer; the
  ratio to direct is the splice's cost.

Results: ``bench/results/tcp.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench.peers import start_backends
from bench.processes import ProcessGroup
from bench.tools import find_tool

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "tcp.md"
BEFORE = "e04c251"  # main just before detection (ecfebef..a2be9e5 added it)
AFTER = "a2be9e5"
MESH = "apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing on port {port}")


def wrk(group: ProcessGroup, port: int, seconds: int, close: bool) -> float:
    argv = [find_tool("wrk"), "-t1", "-c32", f"-d{seconds}s", "-H", "Host: web"]
    if close:
        argv += ["-H", "Connection: close"]
    done = group.run([*argv, f"http://127.0.0.1:{port}/"], None, timeout=seconds + 30)
    match = re.search(rb"Requests/sec:\s*([\d.]+)", done.stdout)
    if match is None:
        raise RuntimeError(done.stdout.decode() + done.stderr.decode())
    return float(match.group(1))


def redis_benchmark(group: ProcessGroup, port: int, requests: int) -> dict[str, float]:
    done = group.run([find_tool("redis-benchmark"), "-p", str(port), "-c", "32", "-n",
                      str(requests), "-t", "get,set", "-q"], None, timeout=300)
    rates = {}
    for name, rate in re.findall(rb"(GET|SET): ([\d.]+) requests per second", done.stdout):
        rates[name.decode()] = float(rate)
    if not rates:
        raise RuntimeError(done.stdout.decode() + done.stderr.decode())
    return rates


def bulk_mib_per_second(port: int, size: int) -> float:
    """Send ``size`` bytes to the echo-less sink at ``port`` and time it (one connection)."""
    chunk = b"x" * (1 << 20)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(size >> 20):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the sink answers once it has read everything
    return (size >> 20) / (time.monotonic() - started)


def start_sink() -> int:
    """A TCP sink: reads until EOF, then writes one byte. A thread per connection."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    def drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(1 << 20):
                pass
            conn.sendall(b".")

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def checkout(rev: str, folder: Path) -> Path:
    """The source of ``rev`` in ``folder/rev`` (git archive: the repository is untouched)."""
    path = folder / rev
    path.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    return path


def start_tulle(group: ProcessGroup, name: str, src: Path, manifests: Path, *args: str) -> int:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(src / "src")}
    group.start(name, [sys.executable, "-c", "from tulle.cli.main import main; main()",
                       "proxy", "-f", str(manifests),
                       "--outbound", f"127.0.0.1:{port}", "--admin",
                       f"127.0.0.1:{free_port()}", *args], None, env=env)
    wait_port(port)
    return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--after", default=AFTER)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tulle-tcp-bench-") as temp:
        folder = Path(temp)
        group = ProcessGroup(log_dir=folder)
        trees: dict[str, Path] = {}
        try:
            backends = start_backends(group, folder, 1, None)
            host, port = backends.addresses[0]
            manifests = folder / "manifests"
            manifests.mkdir()
            (manifests / "web.yaml").write_text(
                "apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: web}\n"
                f"spec:\n  endpoints:\n    - {{address: \"{host}:{port}\"}}\n")
            (manifests / "mesh.yaml").write_text(MESH)
            trees = {label: checkout(rev, folder) for label, rev in
                     (("before", args.before), ("after", args.after))}
            proxies = {label: start_tulle(group, f"tulle-{label}", tree, manifests,
                                          "--inbound", "off")
                       for label, tree in trees.items()}
            rps: dict[tuple[str, str], list[float]] = defaultdict(list)
            for round_number in range(args.rounds):
                for mode, close in (("keep-alive", False), ("connection per request", True)):
                    for label, proxy_port in proxies.items():
                        rate = wrk(group, proxy_port, args.seconds, close)
                        rps[(mode, label)].append(rate)
                        print(f"round {round_number + 1} {mode} {label}: {rate:,.0f} req/s",
                              flush=True)
            redis_port = free_port()
            group.start("redis", [find_tool("redis-server"), "--port", str(redis_port),
                                  "--save", "", "--appendonly", "no"], None)
            wait_port(redis_port)
            sink = start_sink()
            inbound_redis, inbound_sink = free_port(), free_port()
            start_tulle(group, "tulle-redis", trees["after"], manifests, "--inbound",
                        f"127.0.0.1:{inbound_redis}", "--app", f"127.0.0.1:{redis_port}")
            start_tulle(group, "tulle-sink", trees["after"], manifests, "--inbound",
                        f"127.0.0.1:{inbound_sink}", "--app", f"127.0.0.1:{sink}",
                        "--opaque-ports", str(sink))
            wait_port(inbound_redis)
            wait_port(inbound_sink)
            redis: dict[tuple[str, str], list[float]] = defaultdict(list)
            bulk: dict[str, list[float]] = defaultdict(list)
            for round_number in range(args.rounds):
                for label, target in (("direct", redis_port), ("tulle", inbound_redis)):
                    for name, rate in redis_benchmark(group, target, 100_000).items():
                        redis[(name, label)].append(rate)
                        print(f"round {round_number + 1} redis {name} {label}: {rate:,.0f}/s",
                              flush=True)
                for label, target in (("direct", sink), ("tulle", inbound_sink)):
                    bulk[label].append(bulk_mib_per_second(target, 256 << 20))
                    print(f"round {round_number + 1} bulk {label}: {bulk[label][-1]:,.0f} MiB/s",
                          flush=True)
        finally:
            group.stop_all()
    write(args, rps, redis, bulk, load_before, os.getloadavg()[0])


def write(args: argparse.Namespace, rps: dict[tuple[str, str], list[float]],
          redis: dict[tuple[str, str], list[float]], bulk: dict[str, list[float]],
          load_before: float, load_after: float) -> None:
    med = statistics.median
    lines = [
        "# Protocol detection and opaque TCP",
        "",
        f"`python -m bench.tcp_paths` ({args.rounds} rounds of {args.seconds} s, interleaved; "
        f"load average {load_before:.1f} before, {load_after:.1f} after, on a shared "
        "2-core machine: read the ratios, not the absolute numbers). Pure-Python package.",
        "",
        f"HTTP/1.1 through the outbound listener to one nginx, `wrk -t1 -c32`: `before` is "
        f"{args.before} (no detection), `after` is {args.after} (detection on every "
        "connection). Requests/s, median over rounds:",
        "",
        "| load | before | after | after / before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for mode in ("keep-alive", "connection per request"):
        before, after = med(rps[(mode, "before")]), med(rps[(mode, "after")])
        lines.append(f"| {mode} | {before:,.0f} | {after:,.0f} | {after / before:.2f} |")
    lines += [
        "",
        "Opaque TCP (`after`): `redis-benchmark -c 32 -n 100000 -t get,set` to one "
        "redis-server, direct and through the inbound listener (port 6379 is opaque: no "
        "detection); and 256 MiB on one connection to a sink:",
        "",
        "| load | direct | through Tulle | Tulle / direct |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("GET", "SET"):
        direct, tulle = med(redis[(name, "direct")]), med(redis[(name, "tulle")])
        lines.append(f"| redis {name} (requests/s) | {direct:,.0f} | {tulle:,.0f} | "
                     f"{tulle / direct:.2f} |")
    direct, tulle = med(bulk["direct"]), med(bulk["tulle"])
    lines.append(f"| bulk (MiB/s) | {direct:,.0f} | {tulle:,.0f} | {tulle / direct:.2f} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
