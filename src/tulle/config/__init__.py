"""Tulle's configuration: Kubernetes-style manifests in, one frozen, checked Config out.

``load(path)`` reads a file or a folder of multi-document YAML (``ServiceMesh``,
``MeshService``, Kubernetes ``Service`` + ``EndpointSlice``, Gateway API
``HTTPRoute``), checks everything, applies the mesh defaults and returns a
:class:`Config` that is never changed afterwards. Any mistake raises
:class:`ConfigError` listing every problem with file, document and field path.
Nothing here imports asyncio or the proxy.

The names below are imported when first used: a proxy process reads `Config`,
`Address` and `ConfigError` but never loads the schema models or pydantic (it gets
its configuration checked by `tulle.config.checker`, as records).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tulle.config.addresses import Address
    from tulle.config.durations import format_duration, parse_duration
    from tulle.config.loading import load
    from tulle.config.model import Config, Endpoint, Service
    from tulle.config.problems import ConfigError, Problem
    from tulle.config.schema_gateway import HTTPRoute
    from tulle.config.schema_policy import (
        LOAD_BALANCER_ALGORITHMS,
        CircuitBreaker,
        HealthCheck,
        Limits,
        LoadBalancer,
        OutlierDetection,
        Retries,
        RetryBudget,
        Timeouts,
    )
    from tulle.config.schema_tulle import MeshSpec, ProxyListeners

# name -> the module that defines it
_HOMES = {
    "Address": "addresses",
    "format_duration": "durations",
    "parse_duration": "durations",
    "load": "loading",
    "Config": "model",
    "Endpoint": "model",
    "Service": "model",
    "ConfigError": "problems",
    "Problem": "problems",
    "HTTPRoute": "schema_gateway",
    **dict.fromkeys(("LOAD_BALANCER_ALGORITHMS", "CircuitBreaker", "HealthCheck", "Limits",
                     "LoadBalancer", "OutlierDetection", "Retries", "RetryBudget",
                     "Timeouts"), "schema_policy"),
    "MeshSpec": "schema_tulle",
    "ProxyListeners": "schema_tulle",
}

__all__ = [
    "LOAD_BALANCER_ALGORITHMS",
    "Address",
    "CircuitBreaker",
    "Config",
    "ConfigError",
    "Endpoint",
    "HTTPRoute",
    "HealthCheck",
    "Limits",
    "LoadBalancer",
    "MeshSpec",
    "OutlierDetection",
    "Problem",
    "ProxyListeners",
    "Retries",
    "RetryBudget",
    "Service",
    "Timeouts",
    "format_duration",
    "load",
    "parse_duration",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tulle.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tulle.config.{home}"), name)
    globals()[name] = value
    return value
