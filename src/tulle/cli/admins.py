"""What the monitoring commands share: ``--admin`` addresses and reading them.

``stat``, ``routes``, ``edges``, ``top``, ``tap`` and ``dashboard`` all read one
or more proxies' admin listeners (``--admin HOST:PORT``, repeatable, default
127.0.0.1:4191), optionally named (``--name HOST:PORT=web-1``) so output says
which proxy is which — or every proxy subscribed to a control plane
(``--control URL``: the admin addresses its ``/proxies`` lists, named by proxy id).
A window is two rounds of scrapes ``--window`` apart.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from tulle.config import parse_duration
from tulle.telemetry.golden import Scrape, parse_scrape
from tulle.telemetry.scrape import fetch_metrics_async, split_address

DEFAULT_ADMIN = "127.0.0.1:4191"

F = TypeVar("F", bound=Callable[..., Any])


def proxies_of_control_plane(url: str) -> list[tuple[str, str]]:
    """(admin address, proxy id) of every proxy subscribed to the control plane at ``url``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 8086,
                                      timeout=5)
    try:
        conn.request("GET", "/proxies")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise OSError(f"{url}/proxies answered {response.status}")
    found: dict[str, str] = {}
    for entry in json.loads(body)["proxies"]:
        if entry.get("admin"):
            # A proxy with --workers N subscribes once per worker, each with the one
            # admin address that serves them all: it is read once.
            found.setdefault(entry["admin"], entry.get("proxy") or entry["admin"])
    return list(found.items())


def _remember_control(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta["tulle.control"] = value


def _check_admins(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    control = ctx.meta.get("tulle.control")
    if control and not value:
        try:
            found = proxies_of_control_plane(control)
        except (OSError, ValueError, KeyError) as exc:
            raise click.BadParameter(f"cannot list the proxies of {control}: {exc}",
                                     ctx=ctx, param=param) from None
        if not found:
            raise click.BadParameter(f"no proxy with an admin address is subscribed to "
                                     f"{control}", ctx=ctx, param=param)
        ctx.meta["tulle.control_names"] = {admin: name for admin, name in found}
        value = tuple(admin for admin, _ in found)
    admins = list(value) or [DEFAULT_ADMIN]
    for admin in admins:
        try:
            split_address(admin)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return admins


def _check_names(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, str]:
    names: dict[str, str] = {}
    for item in value:
        address, sep, name = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected HOST:PORT=NAME, got {item!r}", ctx=ctx,
                                     param=param)
        names[address] = name
    return {**ctx.meta.get("tulle.control_names", {}), **names}


def admin_options(function: F) -> F:
    """``--admin`` (repeatable) and ``--name`` (repeatable) on a command."""
    function = click.option(
        "--name", "names", multiple=True, metavar="HOST:PORT=NAME", callback=_check_names,
        help="Call the proxy at this admin address NAME in the output (repeatable).",
    )(function)
    function = click.option(
        "--admin", "admins", multiple=True, metavar="HOST:PORT", callback=_check_admins,
        help=f"A proxy's admin address (repeatable) [default: {DEFAULT_ADMIN}].",
    )(function)
    return click.option(
        "--control", metavar="URL", is_eager=True, expose_value=False,
        callback=_remember_control,
        help="Read every proxy subscribed to this control plane (http://host:8086).",
    )(function)


def window_option(default: str) -> Callable[[F], F]:
    """``--window DURATION``: how far apart the two scrapes are."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        if seconds <= 0:
            raise click.BadParameter("must be above 0", ctx=ctx, param=param)
        return seconds

    return click.option(
        "--window", default=default, show_default=True, callback=check, metavar="DURATION",
        help="Scrape, wait this long, scrape again: the signals cover this window.",
    )


async def scrape_all(admins: list[str], names: dict[str, str]) -> list[Scrape]:
    """One round: every admin's /metrics, read concurrently; an unreachable one raises."""

    async def one(admin: str) -> Scrape:
        try:
            text = await fetch_metrics_async(admin)
        except (OSError, TimeoutError) as exc:
            raise click.ClickException(f"cannot read http://{admin}/metrics: {exc}") from None
        return parse_scrape(names.get(admin, admin), text)

    return list(await asyncio.gather(*(one(admin) for admin in admins)))


async def scrape_window(
    admins: list[str], names: dict[str, str], seconds: float
) -> tuple[list[Scrape], list[Scrape]]:
    """Two rounds of scrapes ``seconds`` apart."""
    first = await scrape_all(admins, names)
    await asyncio.sleep(seconds)
    return first, await scrape_all(admins, names)


def run_window(admins: list[str], names: dict[str, str], seconds: float
               ) -> tuple[list[Scrape], list[Scrape]]:
    """`scrape_window` for a synchronous command."""
    return asyncio.run(scrape_window(admins, names, seconds))
