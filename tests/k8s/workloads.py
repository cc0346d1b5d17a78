"""Namespaces, Deployments and Pods written with kubectl, for the injection tests."""

from __future__ import annotations

import json
from typing import Any

from tests.k8s.kubectl import Kube


def namespace(kube: Kube, name: str, inject: bool) -> None:
    """A namespace (annotated tulle.dev/inject=enabled when ``inject``), ready for pods."""
    kube.kubectl("create", "namespace", name)
    if inject:
        kube.kubectl("annotate", "namespace", name, "tulle.dev/inject=enabled")
    # Pods are refused until the controller-manager has made the default ServiceAccount.
    kube.wait_for(f"namespace {name}'s default service account", bool,
                  "serviceaccount", "default", "-n", name)


def deployment(name: str, replicas: int = 2) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "containers": [{"name": "app", "image": "example/app:1",
                                     "ports": [{"containerPort": 8080}]}]}}},
    })


def pods_of(kube: Kube, namespace_: str, app: str, count: int) -> list[dict[str, Any]]:
    """The ``count`` pods the controller-manager made for ``app``."""
    answer = kube.wait_for(f"{count} pods of {app}", lambda a: len(a["items"]) >= count,
                           "pods", "-n", namespace_, "-l", f"app={app}")
    return answer["items"]


def containers(pod: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(init container names, container names)."""
    spec = pod["spec"]
    return ([c["name"] for c in spec.get("initContainers") or []],
            [c["name"] for c in spec["containers"]])
