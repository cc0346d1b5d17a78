"""``tulle demo`` from start to stop: the one place that composes the demo.

Order matters and is the whole point of this module:

1. check every port by binding it, so a taken port is a clear error before
   anything runs;
2. start the three demo services in this process (on the sockets bound in 1);
3. write the manifest to a temp dir and start ``tulle proxy`` on it as a child;
4. once the proxy is ready, start the traffic and refresh the table every
   second from the proxy's own ``/metrics``;
5. on ``--duration``, Ctrl-C, SIGTERM or SIGHUP: stop the traffic, take a last
   reading, print the summary, SIGTERM the proxy (SIGKILL after a grace), close
   the services and remove the temp dir. An ``atexit`` hook kills the proxy if
   anything unexpected skips step 5.

Later demo features (balancer choice, a failover event, the dashboard) are
added here, as steps, not as a second demo.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop
from rich.console import Console, RenderableType
from rich.console import Group as RenderGroup
from rich.live import Live
from rich.text import Text

from tulle.demo.manifest import SERVICE_NAME, write_manifest
from tulle.demo.ports import PortInUseError, PortRequest, bind_listener, check_free
from tulle.demo.proxy_process import ProxyProcess, ProxyStartError
from tulle.demo.service import ServiceProfile, start_service
from tulle.demo.table import build_table
from tulle.demo.traffic import TrafficGenerator, TrafficStats
from tulle.telemetry.scrape import (
    Snapshot,
    Target,
    Window,
    compute_window,
    fetch_metrics_async,
    parse_snapshot,
    split_address,
)

__all__ = ["DEMO_PROFILES", "DemoError", "DemoOptions", "run_demo"]

# One fast, one slow, one flaky: different enough to tell apart at a glance,
# and the slow one slow enough that a latency-aware balancer visibly avoids it.
DEMO_PROFILES: tuple[ServiceProfile, ...] = (
    ServiceProfile("web-1", latency=0.005, jitter=0.5, role="fast"),
    ServiceProfile("web-2", latency=0.060, jitter=0.3, role="slow ~60ms"),
    ServiceProfile("web-3", latency=0.005, jitter=0.5, failure_rate=0.05, role="fails 5%"),
)


class DemoError(Exception):
    """Something the user can fix (a port in use, a proxy that would not start)."""


@dataclass(frozen=True)
class DemoOptions:
    """Everything ``tulle demo`` can be told; the defaults are the documented ports."""

    outbound: str = "127.0.0.1:4140"
    admin: str = "127.0.0.1:4191"
    service_host: str = "127.0.0.1"
    service_port_base: int = 9001
    rps: float = 50.0
    duration: float | None = None  # seconds; None runs until interrupted
    refresh: float = 1.0  # seconds between table updates


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo until its duration ends or it is interrupted; the exit code."""
    console = console or Console()
    return uvloop.run(_Demo(options, console).run())


def _endpoints(options: DemoOptions) -> list[str]:
    return [
        f"{options.service_host}:{options.service_port_base + index}"
        for index in range(len(DEMO_PROFILES))
    ]


def _reserve_ports(options: DemoOptions) -> list[socket.socket]:
    """Check the proxy's ports and bind the services' ones (kept, so no one takes them)."""
    for request in (
        PortRequest(options.outbound, "the proxy's outbound listener", "--outbound HOST:PORT"),
        PortRequest(options.admin, "the proxy's admin server", "--admin HOST:PORT"),
    ):
        check_free(request)
    if options.outbound == options.admin:
        raise PortInUseError("--outbound and --admin must be different addresses")
    sockets: list[socket.socket] = []
    try:
        for address in _endpoints(options):
            host, port = split_address(address)
            if address in (options.outbound, options.admin):
                raise PortInUseError(
                    f"demo service port {port} clashes with --outbound/--admin; "
                    "choose another with --service-port-base PORT"
                )
            try:
                sockets.append(bind_listener(host, port))
            except OSError as error:
                raise PortInUseError(
                    f"port {port} on {host} (a demo service, ports "
                    f"{options.service_port_base}..{options.service_port_base + 2}) is not "
                    f"available: {error.strerror or error}. "
                    "Choose another range with --service-port-base PORT."
                ) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Demo:
    """One run of the demo; holds what must be stopped."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.service = Target("outbound", "default", SERVICE_NAME, "")
        self.rows = [
            (address, profile.role)
            for address, profile in zip(_endpoints(options), DEMO_PROFILES, strict=True)
        ]
        self.stop = asyncio.Event()

    async def run(self) -> int:
        try:
            sockets = _reserve_ports(self.options)
        except PortInUseError as error:
            raise DemoError(str(error)) from None
        servers: list[asyncio.Server] = []
        with tempfile.TemporaryDirectory(prefix="tulle-demo-") as tmp:
            proxy = ProxyProcess(
                [
                    "proxy", "-f", tmp,
                    "--outbound", self.options.outbound,
                    "--inbound", "off",
                    "--allow-tap",
                    "--admin", self.options.admin,
                ],
                log_path=Path(tmp) / "proxy.log",
                admin=self.options.admin,
            )
            atexit.register(proxy.kill)
            try:
                for seed, (profile, sock) in enumerate(zip(DEMO_PROFILES, sockets, strict=True)):
                    servers.append(await start_service(profile, sock, seed=seed))
                write_manifest(Path(tmp), _endpoints(self.options))
                self._install_signal_handlers()
                proxy.start()
                if not await self._ready_or_stopped(proxy):
                    return 0
                code = await self._show(proxy)
                return self._check_stopped(proxy, await proxy.stop()) if code == 0 else code
            finally:
                await proxy.stop()
                atexit.unregister(proxy.kill)
                for server in servers:
                    server.close()
                for server in servers:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(server.wait_closed(), 2.0)
                for sock in sockets:
                    sock.close()
                self._remove_signal_handlers()

    def _check_stopped(self, proxy: ProxyProcess, code: int | None) -> int:
        """1 (and the proxy's log) if the proxy did not stop cleanly on SIGTERM."""
        if code in (None, 0):
            return 0
        self.console.print(f"[red]The proxy exited with code {code} when stopped:[/red]")
        self.console.print(proxy.log_tail(), markup=False)
        return 1

    async def _ready_or_stopped(self, proxy: ProxyProcess) -> bool:
        """Wait for the proxy to be ready; False if the user stopped the demo first."""
        loop = asyncio.get_running_loop()
        ready = loop.create_task(proxy.wait_ready())
        stopped = loop.create_task(self.stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            return False
        try:
            ready.result()
        except ProxyStartError as error:
            raise DemoError(str(error)) from None
        return True

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self.stop.set)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)

    def _intro(self) -> None:
        options = self.options
        print_ = self.console.print
        print_(f"[bold]Tulle demo[/bold]: 3 instances of [bold]{SERVICE_NAME}[/bold] behind "
               f"a proxy, {options.rps:g} requests/s of traffic.")
        print_("Try it by hand:")
        print_(f"  curl -H 'Host: {SERVICE_NAME}' http://{options.outbound}/", markup=False)
        # curl reads only the lower-case http_proxy (upper case is ignored for
        # http:// URLs since the "httpoxy" CGI issue); most other clients read both.
        print_(f"  http_proxy=http://{options.outbound} curl http://{SERVICE_NAME}/",
               markup=False)
        print_(f"Metrics: http://{options.admin}/metrics", markup=False)
        print_(f"Golden signals: tulle stat --admin {options.admin}   "
               f"(-o wide per endpoint)", markup=False)
        print_(f"Live requests: tulle tap --admin {options.admin}   "
               f"busiest paths: tulle top --admin {options.admin}", markup=False)
        print_(f"In a browser: tulle dashboard --admin {options.admin}, "
               "then open http://127.0.0.1:8084/", markup=False)
        print_("Ctrl-C stops everything." if options.duration is None
               else f"Stopping after {options.duration:g} s (Ctrl-C stops sooner).")

    async def _show(self, proxy: ProxyProcess) -> int:
        options = self.options
        self._intro()
        outbound_host, outbound_port = split_address(options.outbound)
        traffic = TrafficGenerator(outbound_host, outbound_port, SERVICE_NAME, options.rps)
        first = await self._scrape()
        started = time.monotonic()
        deadline = None if options.duration is None else started + options.duration
        traffic_task = asyncio.get_running_loop().create_task(traffic.run(self.stop))
        previous, last = first, first
        interactive = self.console.is_terminal
        live = Live(console=self.console, auto_refresh=False) if interactive else None
        exit_code = 0
        try:
            if live is not None:
                live.start()
            while not self.stop.is_set():  # bounded: by --duration or a signal
                timeout = options.refresh
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout)
                code = proxy.exited()
                if code is not None:
                    self.console.print(f"[red]The proxy exited with code {code}:[/red]")
                    self.console.print(proxy.log_tail(), markup=False)
                    exit_code = 1
                    break
                current = await self._scrape()
                window = self._window(previous, current)
                previous = current if current is not None else previous
                last = current if current is not None else last
                view = self._view(window, "last second", traffic.stats)
                if live is not None:
                    live.update(view, refresh=True)
                else:
                    self.console.print(view)
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            self.stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(traffic_task, 2.0)
            if live is not None:
                live.stop()
        final = await self._scrape() if exit_code == 0 else None
        final = final or last
        elapsed = time.monotonic() - started
        self.console.print(self._view(
            self._window(first, final), f"summary over {elapsed:.1f} s", traffic.stats,
        ))
        return exit_code

    async def _scrape(self) -> Snapshot | None:
        try:
            return parse_snapshot(await fetch_metrics_async(self.options.admin, timeout=2.0))
        except (OSError, TimeoutError, ValueError):
            return None

    @staticmethod
    def _window(previous: Snapshot | None, current: Snapshot | None) -> Window | None:
        if previous is None or current is None or current.taken_at <= previous.taken_at:
            return None
        return compute_window(previous, current)

    def _view(self, window: Window | None, label: str, stats: TrafficStats) -> RenderableType:
        title = f"{SERVICE_NAME} via {self.options.outbound} — {label}"
        table = build_table(
            window, self.service, self.rows, title, ascii_only=not self.console.is_terminal
        )
        footer = Text(
            f"traffic generator: sent {stats.sent}, 2xx {stats.ok}, other {stats.failed}, "
            f"no answer {stats.errors}, skipped {stats.skipped}"
            + ("" if window is not None else "   (metrics not available yet)"),
            style="dim",
        )
        return RenderGroup(table, footer)

