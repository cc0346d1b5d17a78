"""``tulle dashboard``: serve the web dashboard over the given proxies' admin addresses."""

from __future__ import annotations

import asyncio

import click

from tulle.cli.admins import admin_options, window_option
from tulle.telemetry.scrape import split_address


@click.command()
@admin_options
@click.option("--listen", default="127.0.0.1:8084", show_default=True, metavar="HOST:PORT",
              help="Where the dashboard listens.")
@window_option("10s")
def dashboard(admins: list[str], names: dict[str, str], listen: str, window: float) -> None:
    """A live web page: services' success rate, RPS and latency, endpoints, tap."""
    from tulle.dashboard import Sampler, serve_dashboard

    try:
        host, port = split_address(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None

    async def run() -> None:
        sampler = Sampler(admins, window=window, names=names)
        server = await serve_dashboard(sampler, host, port)
        bound = server.sockets[0].getsockname()
        click.echo(f"Tulle dashboard on http://{bound[0]}:{bound[1]}/ "
                   f"(proxies: {', '.join(admins)}); Ctrl-C stops it.")
        async with server:
            await sampler.run()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
    except KeyboardInterrupt:
        pass
