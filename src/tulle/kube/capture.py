"""The NAT rules that send a pod's TCP traffic through its proxy (``tulle init``).

Linkerd's proxy-init model: the init container, which runs before the app and the
proxy with NET_ADMIN, installs two chains in the pod's network namespace:

- ``TULLE_INBOUND`` (from PREROUTING): TCP arriving at the pod goes to the proxy's
  inbound port, except the ports that must reach their listener directly (the
  proxy's admin port, for the kubelet's probes, and any configured to skip).
- ``TULLE_OUTBOUND`` (from OUTPUT): TCP the pod sends goes to the proxy's outbound
  port, except the proxy's own connections (matched by its UID: without this, the
  proxy's connection to an endpoint would come straight back to it), connections to
  loopback (the app talking to itself, or to the proxy's own ports), and the
  destination ports and CIDRs configured to skip.

The rules are written as one ``iptables-restore --noflush`` transaction. Declaring a
chain flushes it, so running again replaces Tulle's chains and nothing else; the jumps
from PREROUTING and OUTPUT are added only when missing. Running twice therefore gives
the same rules as running once. The proxy recovers each connection's original
destination with SO_ORIGINAL_DST (``tulle.transport.original_dst``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

INBOUND_CHAIN = "TULLE_INBOUND"
OUTBOUND_CHAIN = "TULLE_OUTBOUND"
# The UID the proxy runs as in the image and the injected sidecar (Linkerd uses 2102 too).
PROXY_UID = 2102
# iptables' multiport match takes at most 15 ports (a range counts as two).
_MULTIPORT_MAX = 15
_LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}


class CaptureError(Exception):
    """The rules could not be read or installed."""


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """What to redirect where, and what to leave alone."""

    proxy_uid: int = PROXY_UID
    inbound_port: int = 4143
    outbound_port: int = 4140
    skip_inbound_ports: tuple[str, ...] = ("4190", "4191")
    skip_outbound_ports: tuple[str, ...] = ()
    skip_outbound_cidrs: tuple[str, ...] = ()


def parse_ports(text: str) -> tuple[str, ...]:
    """``"25,443,6000-6010"`` as iptables port specs (``6000:6010``); ValueError if bad."""
    ports = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        low, _, high = item.partition("-")
        bounds = [low, high] if high else [low]
        if not all(bound.isdigit() and 1 <= int(bound) <= 65535 for bound in bounds):
            raise ValueError(f"expected a port or a range like 6000-6010, got {item!r}")
        if high and int(low) > int(high):
            raise ValueError(f"expected a range from low to high, got {item!r}")
        ports.append(":".join(bounds))
    return tuple(ports)


def _port_groups(ports: Sequence[str]) -> list[str]:
    groups, current, weight = [], [], 0
    for port in ports:
        cost = 2 if ":" in port else 1
        if weight + cost > _MULTIPORT_MAX:
            groups.append(",".join(current))
            current, weight = [], 0
        current.append(port)
        weight += cost
    if current:
        groups.append(",".join(current))
    return groups


def rules(settings: CaptureSettings, family: int = 4,
          present: str = "") -> str:
    """The ``iptables-restore`` input for one address family (4 or 6).

    ``present`` is what ``iptables-save -t nat`` shows now: the jumps into Tulle's
    chains are left out when they are already there.
    """
    cidrs = [cidr for cidr in settings.skip_outbound_cidrs if (":" in cidr) == (family == 6)]
    lines = ["*nat", f":{INBOUND_CHAIN} - [0:0]", f":{OUTBOUND_CHAIN} - [0:0]"]
    for group in _port_groups(settings.skip_inbound_ports):
        lines.append(f"-A {INBOUND_CHAIN} -p tcp -m multiport --dports {group} -j RETURN")
    lines.append(f"-A {INBOUND_CHAIN} -p tcp -j REDIRECT --to-ports {settings.inbound_port}")
    lines.append(f"-A {OUTBOUND_CHAIN} -m owner --uid-owner {settings.proxy_uid} -j RETURN")
    lines.append(f"-A {OUTBOUND_CHAIN} -d {_LOOPBACK[family]} -j RETURN")
    for cidr in cidrs:
        lines.append(f"-A {OUTBOUND_CHAIN} -d {cidr} -j RETURN")
    for group in _port_groups(settings.skip_outbound_ports):
        lines.append(f"-A {OUTBOUND_CHAIN} -p tcp -m multiport --dports {group} -j RETURN")
    lines.append(f"-A {OUTBOUND_CHAIN} -p tcp -j REDIRECT --to-ports {settings.outbound_port}")
    for chain, jump in (("PREROUTING", INBOUND_CHAIN), ("OUTPUT", OUTBOUND_CHAIN)):
        rule = f"-A {chain} -j {jump}"
        if rule not in present.splitlines():
            lines.append(rule)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _tool(family: int, name: str) -> str:
    program = name if family == 4 else name.replace("iptables", "ip6tables")
    path = shutil.which(program)
    if path is None:
        raise CaptureError(f"{program} is not installed (the init container's image has it)")
    return path


def _run(command: list[str], stdin: str | None = None) -> str:
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                                timeout=30, check=False)
    except OSError as exc:
        raise CaptureError(f"{command[0]}: {exc}") from None
    if result.returncode != 0:
        raise CaptureError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def current(family: int = 4) -> str:
    """``iptables-save -t nat`` for one family, as it is now."""
    return _run([_tool(family, "iptables-save"), "-t", "nat"])


def install(settings: CaptureSettings, family: int = 4) -> str:
    """Install (or replace) Tulle's rules for one family; return the rules applied."""
    text = rules(settings, family, current(family))
    _run([_tool(family, "iptables-restore"), "--noflush"], stdin=text)
    return text
