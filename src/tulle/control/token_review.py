"""On a cluster, who a proxy is: its pod's ServiceAccount token, checked by the API server.

The injector gives every meshed pod a projected ServiceAccount token whose audience is
``identity.tulle.dev`` (`AUDIENCE`), valid for a day and rotated by the kubelet. The
proxy sends it with its certificate signing request; the control plane asks the API
server (a ``TokenReview``, authentication.k8s.io/v1) whether it is valid, for that
audience, and whose it is. Only a ``system:serviceaccount:<namespace>:<name>`` user
for the audience is accepted, and the certificate is issued for that ServiceAccount
(Linkerd's identity controller makes the same check). A token for another audience (a
pod's default token, meant for the API server itself) is refused, so a token stolen
from the API's audience cannot be replayed for a mesh identity.

The control plane's ServiceAccount needs ``create`` on ``tokenreviews`` (the chart's
ClusterRole has it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.identity.join_tokens import Unauthenticated
from tulle.identity.spiffe import IdentityError, WorkloadIdentity
from tulle.kube.inject import AUDIENCE

if TYPE_CHECKING:
    from tulle.discovery.kubernetes_api import KubeApi

_PREFIX = "system:serviceaccount:"


class TokenReviewer:
    """Authenticates proxies by their ServiceAccount tokens, through ``api``."""

    def __init__(self, api: KubeApi, trust_domain: str, audience: str = AUDIENCE) -> None:
        self.api = api
        self.trust_domain = trust_domain
        self.audience = audience

    async def authenticate(self, token: str) -> WorkloadIdentity:
        from tulle.discovery.kubernetes_api import ApiError

        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": [self.audience]}}
        try:
            answer = await self.api.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                                         review)
        except ApiError as exc:
            raise Unauthenticated(f"the token review failed: {exc}") from None
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            raise Unauthenticated(f"the API server did not authenticate the token: "
                                  f"{status.get('error') or 'not authenticated'}")
        if self.audience not in (status.get("audiences") or []):
            raise Unauthenticated(f"the token is not for audience {self.audience}")
        username = str((status.get("user") or {}).get("username") or "")
        if not username.startswith(_PREFIX) or username.count(":") != 3:
            raise Unauthenticated(f"the token is not a ServiceAccount's: {username!r}")
        namespace, name = username[len(_PREFIX):].split(":")
        try:
            return WorkloadIdentity(self.trust_domain, namespace, name)
        except IdentityError as exc:
            raise Unauthenticated(str(exc)) from None
