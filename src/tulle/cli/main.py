"""Entry point of the ``tulle`` command.

Sub-commands live in their own modules under ``tulle.cli`` and are imported only
when invoked, so ``tulle validate`` does not pay for importing the proxy, and a
command's dependencies stay out of every other command's start-up time.
"""

from __future__ import annotations

import importlib

import click

from tulle import __version__

# name -> "module:attribute" of the click command that implements it.
COMMANDS: dict[str, str] = {
    "proxy": "tulle.cli.proxy:proxy",
    "validate": "tulle.cli.validate:validate",
    "demo": "tulle.cli.demo:demo",
    "control": "tulle.cli.control:control",
    "stat": "tulle.cli.stat:stat",
    "top": "tulle.cli.top:top",
    "tap": "tulle.cli.tap:tap",
    "routes": "tulle.cli.routes:routes",
    "edges": "tulle.cli.edges:edges",
    "check": "tulle.cli.check:check",
    "dashboard": "tulle.cli.dashboard:dashboard",
    "init": "tulle.cli.init:init",
    "inject": "tulle.cli.inject:inject",
    "install": "tulle.cli.install:install",
    "identity": "tulle.cli.identity:identity",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported when they are first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tulle")
def cli() -> None:
    """Tulle: load balancing, failover and monitoring for every service."""


def main() -> None:
    cli()
