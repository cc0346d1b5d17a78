"""The proxies under test ("peers"), their configs, and the backends behind them.

Every peer fronts the same backends with round-robin balancing and keep-alive
connections to them, so a difference in the table is a difference in the proxy:

- **haproxy** — one thread (``nbthread 1``), ``balance roundrobin``,
  ``http-reuse always`` (share idle server connections between client connections;
  HAProxy configuration manual, "http-reuse").
- **nginx** — one worker, ``upstream`` with ``keepalive`` (which needs
  ``proxy_http_version 1.1`` and an empty ``Connection`` header; nginx docs,
  ngx_http_upstream_module "keepalive").
- **floor** — ``bench/floor.py``: the least a Python forwarder can do (uvloop,
  httptools, Protocol callbacks, pooled keep-alive, round-robin, raw bytes through),
  so Tulle's cost reads against the language's in the same run.
- **tulle** — one ``tulle proxy`` process reading a ``MeshService`` manifest.
- **direct** — no proxy: the client talks to one backend. The ceiling.

The backends are one nginx process serving ``return 200 "ok\\n"`` on several ports.
nginx runs with ``master_process off``: one process serves, so there is exactly one
pid to measure and to stop. Config renderers are pure functions (tested without
starting anything); ``start_*`` functions write the config into the run's temp dir
and start the process through the run's :class:`~bench.processes.ProcessGroup`.
"""

from __future__ import annotations

import http.client
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.processes import ProcessGroup, Started, free_ports, wait_until
from bench.tools import find_tool

# Order the peers run in (and appear in tables): the reference first, the ceiling last.
PEER_NAMES: tuple[str, ...] = ("haproxy", "nginx", "floor", "tulle", "direct")

# Every client sends this Host header: Tulle routes by it to the MeshService below.
SERVICE_HOST = "bench"

# nginx closes a keep-alive connection after this many requests (default 1000 since
# 1.19.10). A 10 s run at tens of thousands of requests per second would otherwise
# reconnect constantly; raised so connection reuse is the same for every peer.
KEEPALIVE_REQUESTS = 1_000_000

# Idle connections to the backends nginx keeps per worker; as many as wrk opens.
UPSTREAM_KEEPALIVE = 64

READY_TIMEOUT_SECONDS = 15.0

FLOOR = Path(__file__).resolve().parent / "floor.py"


class PeerFailed(RuntimeError):
    """A peer or a backend did not start, or did not answer correctly."""


@dataclass(frozen=True)
class Peer:
    """A proxy under test (or ``direct``), ready to take load on ``url``."""

    name: str
    host: str
    port: int
    process: Started | None  # None for ``direct``: there is no proxy to measure

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


@dataclass(frozen=True)
class Backends:
    """The backend servers every peer balances over."""

    addresses: tuple[tuple[str, int], ...]
    process: Started

    @property
    def endpoints(self) -> list[str]:
        return [f"{host}:{port}" for host, port in self.addresses]


# ---------------------------------------------------------------- config rendering


def _nginx_main(workdir: Path, name: str) -> str:
    """The parts of an nginx config that keep every path inside ``workdir``."""
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
"""


def _nginx_http_common(workdir: Path, name: str) -> str:
    return f"""\
    access_log off;
    keepalive_requests {KEEPALIVE_REQUESTS};
    client_body_temp_path {workdir}/{name}.tmp/client_body;
    proxy_temp_path {workdir}/{name}.tmp/proxy;
    fastcgi_temp_path {workdir}/{name}.tmp/fastcgi;
    uwsgi_temp_path {workdir}/{name}.tmp/uwsgi;
    scgi_temp_path {workdir}/{name}.tmp/scgi;
"""


def render_backends_nginx(workdir: Path, ports: Sequence[int]) -> str:
    """nginx config: one process answering ``200 ok`` on each of ``ports``."""
    servers = "".join(
        f'    server {{ listen 127.0.0.1:{port}; return 200 "ok\\n"; }}\n' for port in ports
    )
    return (
        _nginx_main(workdir, "backends")
        + "http {\n"
        + _nginx_http_common(workdir, "backends")
        + "    default_type text/plain;\n"
        + servers
        + "}\n"
    )


def render_nginx_proxy(workdir: Path, listen_port: int, endpoints: Sequence[str]) -> str:
    """nginx config: one worker balancing round-robin over ``endpoints`` with keep-alive."""
    servers = "".join(f"        server {endpoint};\n" for endpoint in endpoints)
    return (
        _nginx_main(workdir, "nginx")
        + "http {\n"
        + _nginx_http_common(workdir, "nginx")
        + "    upstream backends {\n"
        + servers
        + f"        keepalive {UPSTREAM_KEEPALIVE};\n"
        + f"        keepalive_requests {KEEPALIVE_REQUESTS};\n"
        + "    }\n"
        + f"    server {{\n        listen 127.0.0.1:{listen_port};\n"
        + "        location / {\n"
        + "            proxy_pass http://backends;\n"
        + "            proxy_http_version 1.1;\n"
        + '            proxy_set_header Connection "";\n'
        + "        }\n    }\n}\n"
    )


def render_haproxy(
    listen_port: int,
    endpoints: Sequence[str],
    server_options: str = "",
    defaults_extra: Sequence[str] = (),
    threads: int = 1,
) -> str:
    """HAProxy config: one thread (or ``threads``), round-robin, idle server connections
    always reused.

    ``server_options`` go on every ``server`` line (e.g. health checks) and
    ``defaults_extra`` into the ``defaults`` section (e.g. retries): the variants
    other scenarios need, written once.
    """
    options = f" {server_options}" if server_options else ""
    servers = "".join(
        f"    server s{index} {endpoint}{options}\n"
        for index, endpoint in enumerate(endpoints, 1)
    )
    extra = "".join(f"    {line}\n" for line in defaults_extra)
    return f"""\
global
    nbthread {threads}
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
{extra}
frontend bench
    bind 127.0.0.1:{listen_port}
    default_backend backends

backend backends
    balance roundrobin
{servers}"""


def render_tulle_manifest(endpoints: Sequence[str]) -> str:
    """The ``MeshService`` Tulle routes ``Host: bench`` to."""
    lines = "".join(f'    - {{address: "{endpoint}"}}\n' for endpoint in endpoints)
    return f"""\
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: {SERVICE_HOST}}}
spec:
  port: 80
  endpoints:
{lines}"""


# ---------------------------------------------------------------- starting


def start_backends(
    group: ProcessGroup, workdir: Path, count: int, cpus: frozenset[int] | None
) -> Backends:
    """Start ``count`` backends (one nginx process, one port each) and wait for them."""
    ports = free_ports(count)
    conf = workdir / "backends.conf"
    conf.write_text(render_backends_nginx(workdir, ports))
    process = _start_nginx(group, "backends", workdir, conf, cpus)
    addresses = tuple(("127.0.0.1", port) for port in ports)
    for host, port in addresses:
        _wait_serving("backends", process, host, port)
    return Backends(addresses=addresses, process=process)


def start_peer(
    name: str,
    group: ProcessGroup,
    workdir: Path,
    backends: Backends,
    cpus: frozenset[int] | None,
) -> Peer:
    """Start the peer called ``name`` (one of :data:`PEER_NAMES`) in front of ``backends``."""
    starters = {
        "haproxy": _start_haproxy,
        "nginx": _start_nginx_proxy,
        "floor": _start_floor,
        "tulle": _start_tulle,
        "direct": _direct,
    }
    try:
        starter = starters[name]
    except KeyError:
        raise PeerFailed(f"unknown peer {name!r}; known: {', '.join(PEER_NAMES)}") from None
    return starter(group, workdir, backends, cpus)


def _start_nginx(
    group: ProcessGroup, name: str, workdir: Path, conf: Path, cpus: frozenset[int] | None
) -> Started:
    (workdir / f"{name}.tmp").mkdir(exist_ok=True)
    argv = [find_tool("nginx"), "-p", str(workdir), "-c", str(conf)]
    # -e: where to log before the config is read (otherwise /var/log/nginx).
    argv += ["-e", str(workdir / f"{name}.error.log")]
    return group.start(name, argv, cpus)


def _start_haproxy(
    group: ProcessGroup, workdir: Path, backends: Backends, cpus: frozenset[int] | None
) -> Peer:
    (port,) = free_ports(1)
    conf = workdir / "haproxy.cfg"
    conf.write_text(render_haproxy(port, backends.endpoints))
    process = group.start("haproxy", [find_tool("haproxy"), "-f", str(conf), "-db"], cpus)
    _wait_serving("haproxy", process, "127.0.0.1", port)
    return Peer("haproxy", "127.0.0.1", port, process)


def start_haproxy_threads(
    group: ProcessGroup, workdir: Path, backends: Backends, threads: int,
    cpus: frozenset[int] | None,
) -> Peer:
    """HAProxy with ``nbthread`` ``threads``, as peer ``haproxy-Nt``."""
    name = f"haproxy-{threads}t"
    (port,) = free_ports(1)
    conf = workdir / f"{name}.cfg"
    conf.write_text(render_haproxy(port, backends.endpoints, threads=threads))
    process = group.start(name, [find_tool("haproxy"), "-f", str(conf), "-db"], cpus)
    _wait_serving(name, process, "127.0.0.1", port)
    return Peer(name, "127.0.0.1", port, process)


def _start_nginx_proxy(
    group: ProcessGroup, workdir: Path, backends: Backends, cpus: frozenset[int] | None
) -> Peer:
    (port,) = free_ports(1)
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx_proxy(workdir, port, backends.endpoints))
    process = _start_nginx(group, "nginx", workdir, conf, cpus)
    _wait_serving("nginx", process, "127.0.0.1", port)
    return Peer("nginx", "127.0.0.1", port, process)


def _start_floor(
    group: ProcessGroup, workdir: Path, backends: Backends, cpus: frozenset[int] | None
) -> Peer:
    return start_floor_processes(group, backends, 1, cpus)


def start_floor_processes(
    group: ProcessGroup, backends: Backends, processes: int, cpus: frozenset[int] | None
) -> Peer:
    """The Python floor; with ``processes`` > 1, that many on one port, as peer
    ``floor-Np``."""
    name = "floor" if processes == 1 else f"floor-{processes}p"
    (port,) = free_ports(1)
    argv = [sys.executable, str(FLOOR), "--processes", str(processes), str(port),
            *backends.endpoints]
    process = group.start(name, argv, cpus)
    _wait_serving(name, process, "127.0.0.1", port)
    return Peer(name, "127.0.0.1", port, process)


def _start_tulle(
    group: ProcessGroup, workdir: Path, backends: Backends, cpus: frozenset[int] | None
) -> Peer:
    peer, _ = start_tulle(group, workdir, render_tulle_manifest(backends.endpoints), cpus)
    _wait_serving("tulle", peer.process, "127.0.0.1", peer.port)  # type: ignore[arg-type]
    return peer


def start_tulle_workers(
    group: ProcessGroup, workdir: Path, backends: Backends, workers: int,
    cpus: frozenset[int] | None,
) -> Peer:
    """``tulle proxy --workers N`` in front of ``backends``, as peer ``tulle-Nw``."""
    name = f"tulle-{workers}w"
    peer, _ = start_tulle(group, workdir, render_tulle_manifest(backends.endpoints), cpus,
                          name=name, extra_args=("--workers", str(workers)))
    _wait_serving(name, peer.process, "127.0.0.1", peer.port)  # type: ignore[arg-type]
    return peer


def start_tulle(
    group: ProcessGroup, workdir: Path, manifest: str, cpus: frozenset[int] | None,
    name: str = "tulle", extra_args: Sequence[str] = (),
) -> tuple[Peer, int]:
    """Start ``tulle proxy`` (with ``extra_args``) on ``manifest`` and wait until it is
    ready.

    Returns the peer (its outbound listener) and the admin port.
    """
    manifests = workdir / f"{name}-manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "bench.yaml").write_text(manifest)
    port, admin = free_ports(2)
    argv = [
        find_tool("tulle"), "proxy", "-f", str(manifests),
        "--outbound", f"127.0.0.1:{port}", "--inbound", "off",
        "--admin", f"127.0.0.1:{admin}", *extra_args,
    ]  # fmt: skip
    process = group.start(name, argv, cpus)

    def ready() -> bool:
        return process.popen.poll() is not None or _status("127.0.0.1", admin, "/ready") == 200

    wait_until(ready, READY_TIMEOUT_SECONDS)
    if process.popen.poll() is not None or _status("127.0.0.1", admin, "/ready") != 200:
        raise PeerFailed(
            "tulle proxy did not become ready: "
            + _why_not(process, f"GET http://127.0.0.1:{admin}/ready did not answer 200")
        )
    return Peer(name, "127.0.0.1", port, process), admin


def _direct(
    group: ProcessGroup, workdir: Path, backends: Backends, cpus: frozenset[int] | None
) -> Peer:
    host, port = backends.addresses[0]
    return Peer("direct", host, port, None)


# ---------------------------------------------------------------- readiness


def _status(host: str, port: int, path: str, host_header: str = SERVICE_HOST) -> int | None:
    """Status of ``GET path``, or None if nothing answered."""
    return _get(host, port, path, host_header)[0]


def _get(host: str, port: int, path: str, host_header: str) -> tuple[int | None, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path, headers={"Host": host_header})
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def _wait_serving(name: str, process: Started, host: str, port: int) -> None:
    """Wait until ``GET /`` with ``Host: bench`` answers ``200 ok`` through the peer."""

    def answers() -> bool:
        return process.popen.poll() is not None or _get(host, port, "/", SERVICE_HOST)[0] == 200

    wait_until(answers, READY_TIMEOUT_SECONDS)
    status, body = _get(host, port, "/", SERVICE_HOST)
    if process.popen.poll() is not None or status != 200 or body != b"ok\n":
        got = "no answer" if status is None else f"{status} {body[:80]!r}"
        raise PeerFailed(
            f"{name} did not serve GET / (Host: {SERVICE_HOST}) on {host}:{port}: "
            + _why_not(process, f"expected 200 b'ok\\n', got {got}")
        )


def _why_not(process: Started, otherwise: str) -> str:
    code = process.popen.poll()
    reason = otherwise if code is None else f"it exited with code {code}"
    tail = process.log_tail()
    return reason + (f"; last lines of {process.log_path}:\n{tail}" if tail else "")
