"""``tulle edges``: who calls whom, with success rate, across the given proxies.

A proxy's *outbound* metrics say "this proxy's application called dst_service":
the edge's source is the proxy, named by ``--name HOST:PORT=NAME`` or shown as
its admin address. A proxy's *inbound* metrics say "someone called the service
this proxy fronts"; the caller is only known if the metrics carry a
``src_service`` (or ``client_id``) label, otherwise it shows as ``(unmeshed
or unknown)``. Each edge says which side it was measured on, so an edge seen by
both ends appears twice rather than being counted twice.

Over mutual TLS each edge also says who proved what: the client's identity (outbound,
the proxy's own, from its ``tulle_identity_info``; inbound, the ``client_id`` the
client's certificate named) and the server's (outbound, the ``server_id`` the
endpoint's certificate named; inbound, the proxy's own). ``SECURED`` is ``√`` for
such edges; ``-o wide`` and ``-o json`` show the identities.
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
from tulle.telemetry.golden import IDENTITY_INFO, GroupRow, Scrape, group_window

UNKNOWN_SOURCE = "(unmeshed or unknown)"


def edge_rows(previous: list[Scrape], current: list[Scrape]) -> dict[Hashable, GroupRow]:
    """Rows keyed (source, destination, measured-at, client identity, server identity);
    the identities are empty for plaintext."""
    own = {scrape.source: labels.get("identity", "") for scrape in current
           for labels, _ in scrape.series(IDENTITY_INFO)}

    def key(source: str, labels: Mapping[str, str]) -> Hashable | None:
        destination = service_name(labels.get("dst_service", ""), labels.get("dst_namespace", ""))
        direction = labels.get("direction", "")
        secured = labels.get("tls") == "true"
        if direction == "outbound":
            server = labels.get("server_id", "") if secured else ""
            client = own.get(source, "") if secured else ""
            return (source, destination, f"outbound of {source}", client, server)
        if direction == "inbound":
            caller = labels.get("src_service") or labels.get("client_id") or UNKNOWN_SOURCE
            client = labels.get("client_id", "") if secured else ""
            return (caller, destination, f"inbound of {source}", client,
                    own.get(source, "") if secured else "")
        return None

    return group_window(previous, current, key)


@click.command()
@admin_options
@window_option("5s")
@OUTPUT
def edges(admins: list[str], names: dict[str, str], window: float, output: str) -> None:
    """Who calls whom, with success rate, RPS and latency, seen from each proxy."""
    previous, current = run_window(admins, names, window)
    ordered = sorted((row for row in edge_rows(previous, current).values()
                      if row.signals.responses > 0), key=lambda row: str(row.key))
    if output == "json":
        print_json({"windowSeconds": window, "edges": [
            {"src": key[0], "dst": key[1], "seenBy": key[2], "secured": bool(key[4]),
             "clientId": key[3] or None, "serverId": key[4] or None,
             **signal_fields(row.signals)} for row, key in _keyed(ordered)]})
        return
    if not ordered:
        click.echo(f"No traffic in the last {window:g}s on {', '.join(admins)}.")
        return
    wide = output == "wide"
    print_table(["SRC", "DST", "SEEN_BY", "SECURED", *(["CLIENT_ID", "SERVER_ID"] if wide
                                                       else []), *SIGNAL_COLUMNS],
                [[key[0], key[1], key[2], "√" if key[4] else "-",
                  *([key[3] or "-", key[4] or "-"] if wide else []),
                  *signal_cells(row.signals)] for row, key in _keyed(ordered)])


def _keyed(rows: list[GroupRow]) -> list[tuple[GroupRow, tuple[str, str, str, str, str]]]:
    return [(row, row.key) for row in rows]  # type: ignore[misc]
