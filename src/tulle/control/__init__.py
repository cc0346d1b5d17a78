"""The control plane (``tulle control``): discovery sources in, configurations streamed out.

``ControlPlane`` runs one ``ConfigSource`` (Kubernetes, or manifests on disk) and
serves the destination API that proxies subscribe to (``ControlSource`` in
``tulle.discovery.control_client`` is the proxy's side).
"""

from tulle.control.server import HEARTBEAT_SECONDS, PROTOCOL_VERSION, ControlPlane

__all__ = ["HEARTBEAT_SECONDS", "PROTOCOL_VERSION", "ControlPlane"]
