"""ClientStats: inbound, a request over mutual TLS is counted per client identity.

Below the balance layer (it knows the endpoint, the application): the try's stats
become those of (endpoint, client identity), labelled ``tls="true"`` and ``client_id``
as Linkerd labels inbound traffic, so `tulle edges` can say who called and `tulle
stat` still sums the endpoint's traffic. Plaintext requests keep the endpoint's own
stats. The handles are made once per identity and kept here: a request pays one dict
lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.proxy.layers import AttemptLayer

if TYPE_CHECKING:
    from tulle.proxy.attempt import Attempt
    from tulle.proxy.targets import Endpoint
    from tulle.telemetry.metrics import Metrics, ResponseStats


class ClientStats(AttemptLayer):
    __slots__ = ("_by_client", "_endpoint", "inner", "metrics")

    def __init__(self, metrics: Metrics, inner: AttemptLayer) -> None:
        self.metrics = metrics
        self.inner = inner
        self._endpoint: Endpoint | None = None  # whose stats _by_client splits
        self._by_client: dict[str, ResponseStats] = {}

    def call(self, attempt: Attempt) -> None:
        exchange = attempt.exchange
        identity = exchange.client.peer_identity
        if identity is not None:
            endpoint = attempt.endpoint
            if endpoint is not self._endpoint:
                self._endpoint = endpoint
                self._by_client = {}
            stats = self._by_client.get(identity)
            if stats is None:
                stats = self._by_client[identity] = self.metrics.client_responses(
                    endpoint.stats, identity)
            exchange.stats = stats
        self.inner.call(attempt)
