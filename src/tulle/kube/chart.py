"""The Helm chart (deploy/helm/tulle), rendered the way ``helm template`` renders it.

``tulle install`` and ``helm install`` must give the same objects from one source:
the chart. This module loads it (``Chart.yaml``, ``values.yaml``, ``templates/``,
``crds/``), merges the values given over the chart's own, renders every template
with ``tulle.kube.gotemplate``, splits the output into documents and orders them
as helm does (by kind, ``INSTALL_ORDER``), with the CRDs first, as ``helm template
--include-crds`` prints them. The chart ships inside the package (the
``tulle/kube/chart`` link), so this works from an installed wheel.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tulle.kube.gotemplate import Renderer, TemplateError

CHART = Path(__file__).resolve().parent / "chart"
# The order helm installs kinds in (helm's pkg/releaseutil/kind_sorter.go, InstallOrder);
# kinds not listed come after, alphabetically.
INSTALL_ORDER = (
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
)
_SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


class ChartError(Exception):
    """The chart or the values given cannot be rendered."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """One rendered document and the chart file it came from."""

    source: str  # "tulle/templates/webhook.yaml"
    content: str

    @property
    def kind(self) -> str:
        match = re.search(r"^kind:\s*(\S+)", self.content, re.MULTILINE)
        return match.group(1) if match else ""


def chart_metadata(chart: Path = CHART) -> dict[str, Any]:
    return yaml.safe_load((chart / "Chart.yaml").read_text())


def default_values(chart: Path = CHART) -> dict[str, Any]:
    return yaml.safe_load((chart / "values.yaml").read_text()) or {}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``, maps merged key by key (as helm merges values)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_value(values: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (helm's --set, for plain paths); the value is read as YAML."""
    path, sep, text = assignment.partition("=")
    if not sep or not path:
        raise ChartError(f"expected --set key.path=value, got {assignment!r}")
    *parents, last = path.split(".")
    target = values
    for name in parents:
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            raise ChartError(f"--set {path}: {name} is not a map")
    target[last] = yaml.safe_load(text) if text else ""


def render(values: dict[str, Any], *, release: str = "tulle", namespace: str = "tulle",
           chart: Path = CHART) -> list[Manifest]:
    """Every object the chart makes with these values (merged over the defaults), CRDs
    first, in helm's install order."""
    metadata = chart_metadata(chart)
    name = metadata["name"]
    root = {
        "Values": merge(default_values(chart), values),
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm",
                    "IsInstall": True, "IsUpgrade": False, "Revision": 1},
        "Chart": {"Name": name, "Version": metadata.get("version"),
                  "AppVersion": metadata.get("appVersion")},
    }
    renderer = Renderer()
    templates = sorted((chart / "templates").iterdir())
    parsed = []
    try:
        for path in templates:
            nodes = renderer.add(path.read_text(), f"{name}/templates/{path.name}")
            if not path.name.startswith("_") and path.suffix in (".yaml", ".yml", ".tpl"):
                parsed.append((f"{name}/templates/{path.name}", nodes))
        rendered = [(source, renderer.render(nodes, root, source)) for source, nodes in parsed]
    except TemplateError as exc:
        raise ChartError(str(exc)) from None
    manifests = [Manifest(source, document.strip())
                 for source, text in rendered for document in _SEPARATOR.split(text)
                 if document.strip()]
    order = {kind: index for index, kind in enumerate(INSTALL_ORDER)}
    manifests.sort(key=lambda m: (m.kind not in order, order.get(m.kind, 0),
                                  "" if m.kind in order else m.kind))
    crds = [Manifest(f"{name}/crds/{path.name}", path.read_text())
            for path in sorted((chart / "crds").glob("*.yaml"))]
    return crds + manifests


def to_text(manifests: list[Manifest]) -> str:
    """The manifests as ``helm template`` prints them."""
    return "".join(f"---\n# Source: {m.source}\n{m.content}\n" for m in manifests)
