"""``tulle proxy``: run the data plane on manifests from disk."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import uvloop

from tulle.identity.spiffe import WorkloadIdentity
from tulle.policy.defaults import DEFAULT_POLICIES
from tulle.transport.detect import DEFAULT_OPAQUE_PORTS

if TYPE_CHECKING:
    from tulle.config import Address, Config
    from tulle.identity.client import IdentitySettings

# The configuration (pydantic, the schema) is imported where a proxy runs, not at the
# top: the workers' supervisor runs this command too, and never needs it.

# The control plane's own identity, which proxies check the identity service by.
CONTROL_NAMESPACE = "tulle"
CONTROL_SERVICE_ACCOUNT = "tulle-control"


def _identity(address: str | None, token_file: Path | None, anchors: Path | None,
              trust_domain: str, server_name: str | None) -> IdentitySettings | None:
    """Where this proxy gets its certificate (None: it has no identity)."""
    if address is None:
        return None
    from tulle.identity.client import IdentitySettings

    where = _address(address, "--identity-address")
    assert where is not None
    pem = anchors.read_bytes() if anchors else os.environ.get(
        "TULLE_TRUST_ANCHORS_PEM", "").encode()
    if not pem.strip() or token_file is None:
        raise click.UsageError("--identity-address needs --identity-token-file and "
                               "--trust-anchors (or $TULLE_TRUST_ANCHORS_PEM)")
    name = server_name or WorkloadIdentity(trust_domain, CONTROL_NAMESPACE,
                                           CONTROL_SERVICE_ACCOUNT).dns_name
    return IdentitySettings(where.host, where.port, name, token_file, pem)


def _address(value: str | None, flag: str) -> Address | None:
    if value is None:
        return None
    from tulle.config.addresses import Address

    try:
        return Address.parse(value, allow_port_zero=flag != "--app")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _ports(value: str) -> frozenset[int]:
    """``25,587,6000-6010`` as a set of ports."""
    ports: set[int] = set()
    for item in filter(None, (part.strip() for part in value.split(","))):
        low, _, high = item.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise click.BadParameter(f"expected ports or ranges (6000-6010), got {item!r}",
                                     param_hint="--opaque-ports") from None
        if not 1 <= first <= last <= 65535:
            raise click.BadParameter(f"expected ports between 1 and 65535, got {item!r}",
                                     param_hint="--opaque-ports")
        ports.update(range(first, last + 1))
    return frozenset(ports)


def _worker_count(value: str) -> int:
    if value == "auto":
        from tulle.proxy.workers import available_cpus

        return available_cpus()
    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise click.BadParameter(f"expected a number from 1 to {MAX_WORKERS} or 'auto', "
                                 f"got {value!r}", param_hint="--workers")
    return int(value)


# A process per core is the point; far more than the cores only adds memory.
MAX_WORKERS = 256
# Options that are the supervisor's own, not passed on to its workers.
_SUPERVISOR_ONLY = frozenset({"workers", "worker_channel", "worker_index"})


def _worker_options(ctx: click.Context) -> tuple[tuple[str, str | None], ...]:
    """The options this command was given, as (flag, value) for a worker's command line."""
    options = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if (not isinstance(param, click.Option) or param.name in _SUPERVISOR_ONLY
                or value is None or value is False):
            continue
        flag = max(param.opts, key=len)  # the long name
        options.append((flag, None if param.is_flag else str(value)))
    return tuple(options)


@click.command()
@click.option("-f", "--filename", "manifests",
              type=click.Path(exists=True, path_type=Path),
              help="A manifest file or a folder of them (the embedded default).")
@click.option("--control", metavar="URL",
              help="Take the configuration from a control plane (http://host:8086) "
                   "instead of manifests.")
@click.option("--outbound", metavar="HOST:PORT",
              help="Outbound listener [manifest or 127.0.0.1:4140].")
@click.option("--inbound", metavar="HOST:PORT|off",
              help="Inbound listener [manifest or 127.0.0.1:4143]; 'off' to disable.")
@click.option("--admin", metavar="HOST:PORT", help="Admin listener [manifest or 127.0.0.1:4191].")
@click.option("--app", metavar="HOST:PORT",
              help="Local application the inbound listener forwards to.")
@click.option("--shutdown-grace", default=10.0, show_default=True, type=float,
              help="Seconds requests in flight get to finish on SIGTERM.")
@click.option("--head-timeout", default=10.0, show_default=True, type=float,
              help="Seconds a client gets to send a request head.")
@click.option("--send-timeout", default=60.0, show_default=True, type=float,
              help="Seconds a client that does not read what it is sent is given before its "
                   "connection is cut (nginx's send_timeout; counted in "
                   "tulle_send_timeouts_total).")
@click.option("--allow-tap", is_flag=True,
              help="Let the admin listener stream live requests (/tap, `tulle tap`).")
@click.option("--transparent", is_flag=True,
              help="Take traffic redirected by iptables (tulle init): route each connection "
                   "by its original destination (SO_ORIGINAL_DST).")
@click.option("--detect-timeout", default=1.0, show_default=True, type=float,
              help="Seconds a client that sends nothing is waited for before its connection "
                   "is proxied as opaque TCP (a server that speaks first is reached then).")
@click.option("--opaque-ports", metavar="PORTS",
              default=",".join(str(port) for port in sorted(DEFAULT_OPAQUE_PORTS)),
              show_default=True,
              help="Destination ports proxied as opaque TCP without waiting for the client "
                   "(comma-separated, ranges as 6000-6010; '' for none).")
@click.option("--workers", default="1", show_default=True, metavar="N|auto",
              help="Proxy processes sharing the listeners (SO_REUSEPORT), one admin port for "
                   "all; 'auto': one per CPU this process may use.")
@click.option("--identity-address", metavar="HOST:PORT", envvar="TULLE_IDENTITY_ADDRESS",
              help="Get this proxy's certificate from the identity service there (tulle control "
                   "--identity-listen) and speak mutual TLS with meshed proxies.")
@click.option("--identity-token-file", type=click.Path(path_type=Path),
              envvar="TULLE_IDENTITY_TOKEN_FILE",
              help="The token proving who this proxy is: its pod's ServiceAccount token, or "
                   "a join token (tulle identity join-token).")
@click.option("--trust-anchors", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="TULLE_TRUST_ANCHORS_FILE",
              help="PEM trust anchors to verify the identity service with "
                   "[$TULLE_TRUST_ANCHORS_PEM].")
@click.option("--trust-domain", default="cluster.local", show_default=True,
              envvar="TULLE_TRUST_DOMAIN", help="The mesh's trust domain.")
@click.option("--identity-server-name", envvar="TULLE_IDENTITY_SERVER_NAME",
              help="The identity service's TLS name [the control plane's identity, "
                   "tulle-control.tulle.serviceaccount.identity.<trust domain>].")
@click.option("--default-inbound-policy", envvar="TULLE_DEFAULT_INBOUND_POLICY",
              type=click.Choice(list(DEFAULT_POLICIES)),
              help="Inbound traffic to ports no Server selects [the mesh's "
                   "defaultInboundPolicy, all-unauthenticated].")
@click.option("--workload-labels", type=click.Path(dir_okay=False, path_type=Path),
              envvar="TULLE_WORKLOAD_LABELS_FILE",
              help="This workload's labels (a downward API labels file), for Servers' "
                   "podSelectors; with $TULLE_WORKLOAD_NAMESPACE, _PORTS and $TULLE_PROBES.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--worker-channel", type=int, hidden=True)  # set by the supervisor
@click.option("--worker-index", type=int, hidden=True)
def proxy(
    manifests: Path | None,
    control: str | None,
    outbound: str | None,
    inbound: str | None,
    admin: str | None,
    app: str | None,
    shutdown_grace: float,
    head_timeout: float,
    send_timeout: float,
    allow_tap: bool,
    transparent: bool,
    detect_timeout: float,
    opaque_ports: str,
    workers: str,
    identity_address: str | None,
    identity_token_file: Path | None,
    trust_anchors: Path | None,
    trust_domain: str,
    identity_server_name: str | None,
    default_inbound_policy: str | None,
    workload_labels: Path | None,
    log_level: str,
    worker_channel: int | None,
    worker_index: int | None,
) -> None:
    """Run a proxy on manifests (-f, reloaded on change and on SIGHUP) or on what a
    control plane streams (--control)."""
    if (manifests is None) == (control is None):
        raise click.UsageError("give either -f PATH (manifests) or --control URL")
    count = _worker_count(workers)
    worker = f" [worker {worker_index}]" if worker_channel is not None else ""
    log_format = f"%(asctime)s %(levelname)s{worker} %(name)s: %(message)s"
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format=log_format)
    if worker_channel is None and count > 1:
        _supervise(count, admin, allow_tap, shutdown_grace)
        return

    from tulle.policy.workload import workload_from
    from tulle.proxy.process import Handover, become_proxy
    from tulle.transport.limits import raise_open_files_limit

    logging.getLogger("tulle.proxy").info("%s", raise_open_files_limit().describe())
    inbound_enabled = inbound != "off"
    try:
        workload = workload_from(os.environ, workload_labels)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    options = {
        "manifests": manifests,
        "outbound": _address(outbound, "--outbound"),
        "inbound": _address(inbound, "--inbound") if inbound_enabled else None,
        "inbound_enabled": inbound_enabled,
        "admin": _address(admin, "--admin"),
        "app": _address(app, "--app"),
        "head_timeout": head_timeout,
        "send_timeout": send_timeout,
        "shutdown_grace": shutdown_grace,
        "allow_tap": allow_tap,
        "transparent": transparent,
        "detect_timeout": detect_timeout,
        "opaque_ports": _ports(opaque_ports),
        "worker": worker_channel is not None,
        "identity": _identity(identity_address, identity_token_file, trust_anchors,
                              trust_domain, identity_server_name),
        "workload": workload,
        "default_inbound_policy": default_inbound_policy,
    }
    # The proxy itself runs in a fresh interpreter that never loads click or pydantic
    # (tulle.proxy.process): the manifests are checked here, first.
    become_proxy(Handover(options, log_level, log_format, config=_checked(manifests),
                          control=control, worker_channel=worker_channel))


def _checked(manifests: Path | None) -> Config | None:
    """The manifests, checked, as records (None without manifests); exits on a mistake."""
    if manifests is None:
        return None
    from tulle.config import ConfigError, load
    from tulle.config.records import as_records

    try:
        return as_records(load(manifests))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"tulle proxy: cannot read {manifests}: {exc}", err=True)
        sys.exit(1)


def _supervise(count: int, admin: str | None, allow_tap: bool, shutdown_grace: float) -> None:
    """Run ``count`` workers, each this command as given (tulle.proxy.workers)."""
    from tulle.proxy.workers import Supervisor, WorkerCommand
    from tulle.telemetry.scrape import split_address

    if admin is not None:  # refused here, not by every worker (which check it fully)
        try:
            split_address(admin)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--admin") from None
    command = WorkerCommand(_worker_options(click.get_current_context()))

    async def run() -> int:
        supervisor = Supervisor(command, count, admin=admin, allow_tap=allow_tap,
                                shutdown_grace=shutdown_grace)
        return await supervisor.run()

    sys.exit(uvloop.run(run()))
