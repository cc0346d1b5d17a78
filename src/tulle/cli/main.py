"""Entry point of the ``tulle`` command.

Sub-commands live in their own modules under ``tulle.cli`` and are imported only
when invoked, so ``tulle validate`` does not pay for importing the proxy, and a
command's dependencies stay out of every other command's start-up time. ``tulle
--help`` lists the commands from the table below without importing any of them (a
test keeps each line equal to its command's own short help).
"""

from __future__ import annotations

import importlib

import click

from tulle import __version__

# name -> ("module:attribute" of the click command, the first paragraph of its help, which
# `tulle --help` shortens the way click does).
COMMANDS: dict[str, tuple[str, str]] = {
    "proxy": ("tulle.cli.proxy:proxy",
              "Run a proxy on manifests (-f, reloaded on change and on SIGHUP) or on what a "
              "control plane streams (--control)."),
    "validate": ("tulle.cli.validate:validate",
                 "Check the manifests at PATH (a file, or a folder searched recursively)."),
    "demo": ("tulle.cli.demo:demo",
             "Three instances of a demo service behind a Tulle proxy, with live traffic and "
             "stats."),
    "control": ("tulle.cli.control:control",
                "Watch Services, EndpointSlices and Tulle's CRDs; stream them to proxies."),
    "stat": ("tulle.cli.stat:stat",
             "Success rate, RPS and p50/p95/p99 latency per service (per endpoint with -o "
             "wide)."),
    "top": ("tulle.cli.top:top",
            "The busiest paths (of SERVICE, or all) live, with success rate and latency."),
    "tap": ("tulle.cli.tap:tap",
            "Stream the requests to SERVICE (or all) live: method, path, status, latency, "
            "endpoint."),
    "routes": ("tulle.cli.routes:routes", "Success rate, RPS and latency per route of SERVICE."),
    "edges": ("tulle.cli.edges:edges",
              "Who calls whom, with success rate, RPS and latency, seen from each proxy."),
    "check": ("tulle.cli.check:check",
              "Pre-flight checks: configuration, ports, admin, Prometheus; or, with --cluster, "
              "Tulle on a Kubernetes cluster. Exit 1 if any fails."),
    "dashboard": ("tulle.cli.dashboard:dashboard",
                  "A live web page: services' success rate, RPS and latency, endpoints, tap."),
    "init": ("tulle.cli.init:init",
             "Install the iptables rules that redirect this network namespace's TCP to the "
             "proxy."),
    "inject": ("tulle.cli.inject:inject",
               "Print the manifests in SOURCE (a file, or - for stdin) with the Tulle proxy "
               "added to every Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and "
               "Pod."),
    "install": ("tulle.cli.install:install",
                "Print the control plane's objects (CRDs, RBAC, Deployment, webhook) as YAML."),
    "identity": ("tulle.cli.identity:identity",
                 "Trust anchors, issuers and join tokens for mesh identity (mTLS)."),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported when they are first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attribute = entry[0].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
            formatter.write_dl([
                # A stand-in with the same help shortens it as the real command would.
                (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit))
                for name in sorted(COMMANDS)
            ])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tulle")
def cli() -> None:
    """Tulle: load balancing, failover and monitoring for every service."""


def main() -> None:
    cli()
