"""``tulle demo``: see load balancing and golden signals in a minute, on one machine."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from tulle.demo import DemoError, DemoOptions, run_demo

# A pipe has no width; wide enough that the table never wraps an endpoint.
PLAIN_WIDTH = 120


@click.command()
@click.option("--outbound", default="127.0.0.1:4140", show_default=True, metavar="HOST:PORT",
              help="Where the proxy listens for the apps' calls (and the traffic goes).")
@click.option("--admin", default="127.0.0.1:4191", show_default=True, metavar="HOST:PORT",
              help="The proxy's admin server: /metrics, /ready.")
@click.option("--service-port-base", default=9001, show_default=True, metavar="PORT",
              type=click.IntRange(1, 65533),
              help="The three demo services listen on PORT, PORT+1 and PORT+2.")
@click.option("--rps", default=50.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Requests per second the traffic generator sends.")
@click.option("--duration", default=None, type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Stop by itself after SECONDS (default: run until Ctrl-C).")
def demo(outbound: str, admin: str, service_port_base: int, rps: float,
         duration: float | None) -> None:
    """Three instances of a demo service behind a Tulle proxy, with live traffic and stats.

    One instance is slow and one fails a few percent of requests; the table
    shows, every second, what the proxy measured for each of them.
    """
    options = DemoOptions(
        outbound=outbound,
        admin=admin,
        service_port_base=service_port_base,
        rps=rps,
        duration=duration,
    )
    console = Console() if sys.stdout.isatty() else Console(width=PLAIN_WIDTH)
    try:
        code = run_demo(options, console)
    except DemoError as error:
        raise click.ClickException(str(error)) from None
    sys.exit(code)
