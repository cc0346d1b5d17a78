"""Who this proxy's workload is, for inbound policy, when it is not in the manifests.

An injected proxy learns it from its pod (`tulle.kube.inject` sets these up):
``TULLE_WORKLOAD_NAMESPACE`` (the downward API's ``metadata.namespace``), the pod's
labels in a file (a downward API volume: one ``key="value"`` line each, the value
quoted as Go's ``%q`` quotes it), ``TULLE_WORKLOAD_PORTS`` (``name=port,…``: the
containers' named ports, for Servers that name their port) and ``TULLE_PROBES``
(``port:path,…``: the kubelet's HTTP probes, which default policy lets through).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tulle.config.names import DNS_LABEL


@dataclass(frozen=True, slots=True)
class Probe:
    """A kubelet probe of the application (an HTTP GET): allowed by default policy."""

    port: int
    path: str


@dataclass(frozen=True, slots=True)
class Workload:
    """The workload as its pod describes it: the fields of a ServiceMesh's ``workload``
    (`tulle.config.schema_tulle.Workload`), which policy reads the same way."""

    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # container port names
    probes: tuple[Probe, ...] = ()


def read_labels(path: Path) -> dict[str, str]:
    """A downward API labels file: ``key="value"`` lines."""
    labels = {}
    for line in path.read_text().splitlines():
        key, sep, quoted = line.partition("=")
        if not sep:
            continue
        try:
            value = json.loads(quoted)  # %q of a label value is a valid JSON string
        except ValueError:
            value = quoted.strip('"')
        labels[key.strip()] = str(value)
    return labels


def workload_from(environ: Mapping[str, str], labels_file: Path | None) -> Workload | None:
    """The workload the environment describes (None: it describes none).

    Raises ValueError when the namespace is not a namespace's name. Ports and probes
    that are not what they should be are left out.
    """
    namespace = environ.get("TULLE_WORKLOAD_NAMESPACE")
    if namespace is None and labels_file is None:
        return None
    if namespace is not None and not DNS_LABEL.fullmatch(namespace):
        raise ValueError(f"TULLE_WORKLOAD_NAMESPACE: expected a namespace's name (a DNS "
                         f"label), got {namespace!r}")
    ports = {}
    for item in environ.get("TULLE_WORKLOAD_PORTS", "").split(","):
        name, sep, number = item.strip().partition("=")
        if sep and number.isdigit() and 1 <= int(number) <= 65535:
            ports[name] = int(number)
    probes = []
    for item in environ.get("TULLE_PROBES", "").split(","):
        port, sep, path = item.strip().partition(":")
        if sep and port.isdigit() and 1 <= int(port) <= 65535 and path.startswith("/"):
            probes.append(Probe(port=int(port), path=path))
    labels = read_labels(labels_file) if labels_file is not None and labels_file.exists() else {}
    return Workload(namespace=namespace or "default", labels=labels, ports=ports,
                    probes=tuple(probes))
