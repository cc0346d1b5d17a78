"""``tulle stat [SERVICE]``: success rate, RPS and latency per service, from the proxies.

Linkerd's ``viz stat`` reads a minute of Prometheus data; a one-shot command
with no Prometheus cannot look back, so this one looks forward: it scrapes
every ``--admin``, waits ``--window`` (default 5s: long enough for a few
hundred requests on a busy service, short enough to wait for), scrapes again,
and reports what happened in between. Responses the proxy made itself (404 for
an unknown host, 503 with nothing to send to) count against the service they
were for; those for no known service show as ``(unknown)``.

TCP_CONN is the connections open to the row's service when the proxy's TCP metrics
carry a ``dst_service`` label: opaque TCP services (``protocol: tcp``, opaque ports)
and CONNECT tunnels, whose rows show only that (no requests to count). HTTP
connections are counted per listener, so when no row has TCP connections, those open
on each proxy are printed under the table instead.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import click

from tulle.cli.admins import admin_options, run_window, window_option
from tulle.cli.formatting import (
    OUTPUT,
    SIGNAL_COLUMNS,
    print_json,
    print_table,
    service_name,
    signal_cells,
    signal_fields,
)
from tulle.telemetry.golden import GroupRow, Scrape, group_window


def matches_service(wanted: str | None, labels: Mapping[str, str]) -> bool:
    if wanted is None:
        return True
    service = labels.get("dst_service", "")
    return wanted in (service, f"{service}.{labels.get('dst_namespace', '')}")


def stat_rows(
    previous: list[Scrape], current: list[Scrape], service: str | None, wide: bool,
    direction: str | None = None,
) -> dict[Hashable, GroupRow]:
    """Rows keyed (direction, namespace, service[, endpoint])."""

    def key(source: str, labels: Mapping[str, str]) -> Hashable | None:
        if not matches_service(service, labels):
            return None
        if direction is not None and labels.get("direction") != direction:
            return None
        base = (labels.get("direction", ""), labels.get("dst_namespace", ""),
                labels.get("dst_service", ""))
        return (*base, labels.get("endpoint", "")) if wide else base

    def tcp_key(source: str, labels: Mapping[str, str]) -> Hashable | None:
        if "dst_service" not in labels or labels.get("peer", "dst") != "dst":
            return None
        return key(source, labels)

    return group_window(previous, current, key, tcp_key)


def listener_connections(current: list[Scrape]) -> list[str]:
    """'SOURCE DIRECTION: N from clients, M to endpoints' per proxy and listener."""
    lines = []
    for scrape in current:
        per_direction: dict[str, dict[str, float]] = {}
        for labels, value in scrape.series("tcp_open_connections"):
            peers = per_direction.setdefault(labels.get("direction", ""), {})
            peers[labels.get("peer", "")] = peers.get(labels.get("peer", ""), 0.0) + value
        for direction, peers in sorted(per_direction.items()):
            if not any(peers.values()):
                continue
            lines.append(f"{scrape.source} {direction}: {peers.get('src', 0):.0f} from clients,"
                         f" {peers.get('dst', 0):.0f} to endpoints")
    return lines


@click.command()
@click.argument("service", required=False)
@admin_options
@window_option("5s")
@click.option("--direction", type=click.Choice(["outbound", "inbound"]),
              help="Only this side of the proxies [default: both].")
@OUTPUT
def stat(
    service: str | None, admins: list[str], names: dict[str, str], window: float,
    direction: str | None, output: str,
) -> None:
    """Success rate, RPS and p50/p95/p99 latency per service (per endpoint with -o wide)."""
    previous, current = run_window(admins, names, window)
    wide = output == "wide"
    rows = stat_rows(previous, current, service, wide, direction)
    ordered = sorted((row for row in rows.values() if _worth_showing(row, wide)),
                     key=lambda row: row.key)  # type: ignore[arg-type,return-value]
    if output == "json":
        print_json({
            "windowSeconds": window,
            "rows": [_json_row(row, wide) for row in ordered],
            "tcpOpenConnections": listener_connections(current),
        })
        return
    columns = ["SERVICE", "DIRECTION", *(["ENDPOINT"] if wide else []), *SIGNAL_COLUMNS,
               "TCP_CONN"]
    table = []
    for row in ordered:
        direction_, namespace, name, *endpoint = row.key  # type: ignore[misc]
        tcp = "-" if row.tcp_open is None else f"{row.tcp_open:.0f}"
        shown_endpoint = [endpoint[0] or "(proxy)"] if wide else []
        table.append([service_name(name, namespace), direction_, *shown_endpoint,
                      *signal_cells(row.signals), tcp])
    if not table:
        click.echo(f"No traffic{' for ' + service if service else ''} in the last "
                   f"{window:g}s on {', '.join(admins)}.")
        return
    print_table(columns, table)
    connections = listener_connections(current)
    if connections and all(row.tcp_open is None for row in ordered):
        click.echo("\nTCP connections open now:")
        for line in connections:
            click.echo(f"  {line}")


def _worth_showing(row: GroupRow, wide: bool) -> bool:
    """A quiet service is worth a row; a quiet "(unknown)" or "(proxy)" row is noise."""
    if row.signals.responses > 0:
        return True
    _, _, name, *endpoint = row.key  # type: ignore[misc]
    return bool(name) and not (wide and not endpoint[0])


def _json_row(row: GroupRow, wide: bool) -> dict[str, object]:
    direction, namespace, name, *endpoint = row.key  # type: ignore[misc]
    fields: dict[str, object] = {"service": name, "namespace": namespace,
                                 "direction": direction}
    if wide:
        fields["endpoint"] = endpoint[0]
    return {**fields, **signal_fields(row.signals), "tcpOpenConnections": row.tcp_open}
