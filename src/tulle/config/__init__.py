"""Tulle's configuration: Kubernetes-style manifests in, one frozen, checked Config out.

``load(path)`` reads a file or a folder of multi-document YAML (``ServiceMesh``,
``MeshService``, Kubernetes ``Service`` + ``EndpointSlice``, Gateway API
``HTTPRoute``), checks everything, applies the mesh defaults and returns a
:class:`Config` that is never changed afterwards. Any mistake raises
:class:`ConfigError` listing every problem with file, document and field path.
Nothing here imports asyncio or the proxy.
"""

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
