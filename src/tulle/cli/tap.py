"""``tulle tap``: watch the requests the proxies handle, live.

Reads ``/tap`` from every ``--admin`` (the proxies must allow it: ``tulle proxy
--allow-tap``), filtered inside the proxy by service, method, path prefix and
status, at most ``--rate`` events per second per proxy (the proxy caps it).
Prints one line per request, or JSON lines with ``-o json``; stops after
``--max-events`` events or ``--duration``, or on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import click

from tulle.cli.admins import admin_options
from tulle.config import parse_duration
from tulle.telemetry.tap_client import merged_tap


def tap_filter_options(function: Callable[..., object]) -> Callable[..., object]:
    """The filters ``tap`` and ``top`` share; sent to the proxy as query parameters."""
    for option in reversed([
        click.argument("service", required=False),
        click.option("--method", help="Only requests with this method."),
        click.option("--path", "path_prefix", metavar="PREFIX",
                     help="Only requests whose path starts with PREFIX."),
        click.option("--status", type=int, help="Only responses with this status code."),
        click.option("--rate", type=float, default=50.0, show_default=True,
                     help="Events per second per proxy, at most (the proxy caps it at 100)."),
        click.option("--duration", metavar="DURATION", callback=_duration,
                     help="Stop after this long (e.g. 30s)."),
    ]):
        function = option(function)
    return function


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def tap_params(service: str | None, method: str | None, path_prefix: str | None,
               status: int | None, rate: float) -> dict[str, object]:
    return {"service": service, "method": method, "path": path_prefix, "status": status,
            "rate": rate}


async def events_until(
    admins: list[str], params: dict[str, object], duration: float | None
) -> AsyncIterator[dict[str, object]]:
    """Tap events until ``duration`` runs out (or forever)."""
    deadline = None if duration is None else time.monotonic() + duration
    stream = merged_tap(admins, params)
    try:
        while True:  # bounded by the deadline, the caller's event count, or the streams' end
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            try:
                event = await asyncio.wait_for(anext(stream), remaining)
            except (StopAsyncIteration, TimeoutError):
                return
            yield event
    finally:
        await stream.aclose()


def format_event(event: dict[str, object], names: dict[str, str]) -> str:
    """One human line: time, direction, method, authority+path, status (and a gRPC call's
    grpc-status), latency, endpoint."""
    at = float(event.get("at", 0.0))  # type: ignore[arg-type]
    stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
    error = f" error={event['error']}" if event.get("error") else ""
    grpc = event.get("grpc_status", -1)
    status = f"{event.get('status')} grpc-status={grpc}" if grpc != -1 else event.get("status")
    # tls=<identity>: over mutual TLS, with the peer that proved it (client inbound,
    # server outbound).
    tls = f" tls={event['identity']}" if event.get("identity") else ""
    endpoint = event.get("endpoint") or "-"
    admin = str(event.get("admin", ""))
    return (f"{stamp} {event.get('direction', '')} {event.get('method')} "
            f"{event.get('authority')}{event.get('path')} -> {status} "
            f"{float(event.get('latency_ms', 0.0)):.1f}ms "  # type: ignore[arg-type]
            f"endpoint={endpoint}{error}{tls} proxy={names.get(admin, admin)}")


@click.command()
@admin_options
@tap_filter_options
@click.option("--max-events", type=int, help="Stop after this many events.")
@click.option("-o", "--output", default="line", show_default=True,
              type=click.Choice(["line", "json"]), help="Human lines or JSON lines.")
def tap(admins: list[str], names: dict[str, str], service: str | None, method: str | None,
        path_prefix: str | None, status: int | None, rate: float, duration: float | None,
        max_events: int | None, output: str) -> None:
    """Stream the requests to SERVICE (or all) live: method, path, status, latency, endpoint."""
    params = tap_params(service, method, path_prefix, status, rate)

    async def run() -> None:
        seen = 0
        async for event in events_until(admins, params, duration):
            if output == "json":
                click.echo(json.dumps(event, separators=(",", ":")))
            else:
                click.echo(format_event(event, names))
            seen += 1
            if max_events is not None and seen >= max_events:
                return

    try:
        asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
