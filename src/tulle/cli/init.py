"""``tulle init``: the init container's command; sends the pod's TCP through its proxy."""

from __future__ import annotations

import sys

import click

from tulle.kube.capture import PROXY_UID, CaptureError, CaptureSettings, install, parse_ports, rules


def _ports(value: str, flag: str) -> tuple[str, ...]:
    try:
        return parse_ports(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


@click.command("init")
@click.option("--proxy-uid", default=PROXY_UID, show_default=True, type=int,
              help="The proxy's UID: its own connections are never redirected.")
@click.option("--inbound-port", default=4143, show_default=True, type=int,
              help="Where inbound TCP is redirected.")
@click.option("--outbound-port", default=4140, show_default=True, type=int,
              help="Where outbound TCP is redirected.")
@click.option("--skip-inbound-ports", default="4190,4191", show_default=True, metavar="PORTS",
              help="Inbound ports left alone (the admin port, for probes), e.g. 22,8000-8010.")
@click.option("--skip-outbound-ports", default="", metavar="PORTS",
              help="Destination ports the app reaches directly, e.g. 25,3306.")
@click.option("--skip-outbound-cidrs", default="", metavar="CIDRS",
              help="Destination networks the app reaches directly, e.g. 169.254.169.254/32.")
@click.option("--ipv6/--no-ipv6", default=False, show_default=True,
              help="Also capture IPv6 (ip6tables), for a proxy listening on IPv6 "
                   "(--outbound [::1]:4140). Off: IPv6 traffic flows uncaptured.")
@click.option("--dry-run", is_flag=True, help="Print the rules (iptables-restore input); change "
                                              "nothing.")
def init(proxy_uid: int, inbound_port: int, outbound_port: int, skip_inbound_ports: str,
         skip_outbound_ports: str, skip_outbound_cidrs: str, ipv6: bool, dry_run: bool) -> None:
    """Install the iptables rules that redirect this network namespace's TCP to the proxy.

    Idempotent: running it again replaces Tulle's chains and adds nothing twice."""
    settings = CaptureSettings(
        proxy_uid=proxy_uid, inbound_port=inbound_port, outbound_port=outbound_port,
        skip_inbound_ports=_ports(skip_inbound_ports, "--skip-inbound-ports"),
        skip_outbound_ports=_ports(skip_outbound_ports, "--skip-outbound-ports"),
        skip_outbound_cidrs=tuple(filter(None, (c.strip() for c in
                                                skip_outbound_cidrs.split(",")))),
    )
    families = (4, 6) if ipv6 else (4,)
    for family in families:
        name = "iptables" if family == 4 else "ip6tables"
        if dry_run:
            click.echo(f"# {name}-restore --noflush")
            click.echo(rules(settings, family), nl=False)
            continue
        try:
            applied = install(settings, family)
        except CaptureError as exc:
            click.echo(f"tulle init: {exc}", err=True)
            sys.exit(1)
        click.echo(f"# {name}: installed")
        click.echo(applied, nl=False)
