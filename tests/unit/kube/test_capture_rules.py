"""The iptables rules ``tulle init`` installs, as text (installed for real in
tests/integration/test_transparent_capture.py)."""

from __future__ import annotations

import pytest

from tulle.kube.capture import CaptureSettings, parse_ports, rules


def test_ports_and_ranges_are_checked() -> None:
    assert parse_ports(" 25, 6000-6010,,443") == ("25", "6000:6010", "443")
    for bad in ("0", "70000", "http", "10-5", "1-2-3"):
        with pytest.raises(ValueError):
            parse_ports(bad)


def test_many_skipped_ports_are_split_into_multiport_groups() -> None:
    ports = tuple(str(port) for port in range(1000, 1020))
    text = rules(CaptureSettings(skip_outbound_ports=ports))
    groups = [line for line in text.splitlines() if "TULLE_OUTBOUND -p tcp -m multiport" in line]
    assert len(groups) == 2 and groups[0].count(",") == 14


def test_jumps_already_present_are_not_added_again() -> None:
    first = rules(CaptureSettings())
    assert "-A PREROUTING -j TULLE_INBOUND" in first and "-A OUTPUT -j TULLE_OUTBOUND" in first
    again = rules(CaptureSettings(), present=first)
    assert "-A PREROUTING" not in again and "-A OUTPUT" not in again
    assert again.startswith("*nat\n:TULLE_INBOUND - [0:0]\n")  # chains are still replaced


def test_cidrs_go_to_their_own_family() -> None:
    settings = CaptureSettings(skip_outbound_cidrs=("10.0.0.0/8", "fd00::/8"))
    assert "-d 10.0.0.0/8" in rules(settings, 4) and "fd00::/8" not in rules(settings, 4)
    assert "-d fd00::/8" in rules(settings, 6) and "-d ::1/128" in rules(settings, 6)
