"""The admission webhook that adds the proxy to pods as they are created.

The API server sends every Pod creation (``MutatingWebhookConfiguration`` in the
chart) as an ``AdmissionReview`` to ``POST /inject``, over TLS. A pod is injected
when its own ``tulle.dev/inject`` annotation says ``enabled``, or, when it says
nothing, its namespace's does; ``disabled`` always wins. The answer is a JSON Patch
that adds what ``tulle.kube.inject`` adds (the same as ``tulle inject``), or no patch.
Namespace annotations are read from the API server for each review (one GET; a
namespace that cannot be read counts as not annotated, and the pod is created
without the sidecar, as with ``failurePolicy: Ignore`` when the webhook is down).

A request that is not a well-formed review gets a 400 and the connection is closed;
bodies over ``MAX_BODY`` get a 413. ``GET /live`` answers 200 (``tulle check``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tulle.control.json_exchange import JsonEndpoint, JsonRequest, serve_one
from tulle.kube.inject import INJECT, InjectConfig, inject_pod

log = logging.getLogger(__name__)

# A pod with many containers and env vars is tens of KB; anything far beyond is not one.
MAX_BODY = 4 * 1024 * 1024
NamespaceAnnotations = Callable[[str], Awaitable[dict[str, str]]]


def _load(cert_dir: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    return context


class ReloadingCertificate:
    """The webhook's TLS, from ``tls.crt`` and ``tls.key`` (a kubernetes.io/tls Secret),
    read again when the files change: the kubelet updates a mounted Secret in place
    (``tulle install | kubectl apply`` makes new certificates, so does a helm install
    that replaced the Secret), and the API server trusts the new CA at once. Each TLS
    handshake starts on ``context``; at most every ``check_every`` seconds it looks at
    the files, and hands the handshake the newest context. A pair that does not load
    (half written) is logged, and the previous one kept."""

    def __init__(self, cert_dir: Path, check_every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cert_dir = cert_dir
        self.check_every = check_every
        self._clock = clock
        self._stamp = self._stamps()
        self._next_check = clock() + check_every
        self.context = _load(cert_dir)
        self.context.sni_callback = self._on_hello
        self._current = self.context
        self.reloads = 0

    def _stamps(self) -> tuple[float, ...]:
        try:
            return tuple((self.cert_dir / name).stat().st_mtime for name in ("tls.crt", "tls.key"))
        except OSError:
            return ()

    def _on_hello(self, connection: Any, server_name: str | None,
                  context: ssl.SSLContext) -> None:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.check_every
            stamp = self._stamps()
            if stamp and stamp != self._stamp:
                try:
                    self._current = _load(self.cert_dir)
                    self._stamp = stamp
                    self.reloads += 1
                    log.info("webhook certificate reloaded from %s", self.cert_dir)
                except (OSError, ssl.SSLError) as exc:
                    log.warning("cannot load the new webhook certificate (%s); keeping the "
                                "previous one", exc)
        if self._current is not context:
            connection.context = self._current


def server_context(cert_dir: Path) -> ssl.SSLContext:
    """TLS for the webhook, following changes to its certificate files."""
    return ReloadingCertificate(cert_dir).context


def review_response(review: Any, patch: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The AdmissionReview answer: always allowed; with a JSON patch when there is one."""
    response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview", "response": response}


def pod_patch(pod: dict[str, Any], config: InjectConfig, namespace_annotations: dict[str, str]
              ) -> list[dict[str, Any]] | None:
    """The JSON patch that injects ``pod``, or None when it is not to be injected."""
    metadata = copy.deepcopy(pod.get("metadata") or {})
    spec = copy.deepcopy(pod.get("spec") or {})
    wanted = (metadata.get("annotations") or {}).get(INJECT) or namespace_annotations.get(INJECT)
    if wanted != "enabled" or not inject_pod(metadata, spec, config,
                                             namespace={"annotations": namespace_annotations}):
        return None
    return [
        {"op": "add", "path": "/metadata/annotations", "value": metadata["annotations"]},
        {"op": "add", "path": "/spec/initContainers", "value": spec["initContainers"]},
        {"op": "add", "path": "/spec/containers", "value": spec["containers"]},
        {"op": "add", "path": "/spec/volumes", "value": spec["volumes"]},
    ]


class InjectionWebhook:
    """Serves ``POST /inject`` over TLS."""

    def __init__(self, config: InjectConfig, namespace_annotations: NamespaceAnnotations,
                 trust_anchors: Callable[[], str] | None = None) -> None:
        self.config = config
        self.namespace_annotations = namespace_annotations
        # The trust anchors each injected proxy gets, read at each injection (the issuer's
        # ca.crt, which an anchor rotation changes); None: proxies get no identity.
        self.trust_anchors = trust_anchors
        self.reviews = 0
        self.injected = 0
        self._server: asyncio.Server | None = None
        self._endpoint = JsonEndpoint(b"/inject", "an AdmissionReview", MAX_BODY, self._live,
                                      self._review)

    async def start(self, host: str, port: int, context: ssl.SSLContext) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=context)
        bound = self._server.sockets[0].getsockname()
        log.info("admission webhook on https://%s:%d/inject", bound[0], bound[1])
        return bound[0], bound[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_one(reader, writer, self._endpoint)

    def _live(self) -> dict[str, Any]:
        return {"reviews": self.reviews, "injected": self.injected}

    async def _review(self, request: JsonRequest, peer: Any) -> tuple[int, dict[str, Any]]:
        try:
            review = json.loads(request.body)
            pod = review["request"]["object"]
            namespace = review["request"].get("namespace") or \
                (pod.get("metadata") or {}).get("namespace") or "default"
            if not isinstance(pod, dict) or not isinstance(review["request"]["uid"], str):
                raise TypeError("request.object must be a Pod and request.uid a string")
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"error": f"expected an AdmissionReview with a Pod: {exc}"}
        self.reviews += 1
        try:
            annotations = await self.namespace_annotations(namespace)
        except Exception as exc:  # an unreadable namespace: create the pod as it is
            log.warning("cannot read namespace %s (%s); not injecting", namespace, exc)
            annotations = {}
        config = self.config
        if self.trust_anchors is not None:
            try:
                config = dataclasses.replace(config, trust_anchors_pem=self.trust_anchors())
            except OSError as exc:
                log.warning("cannot read the trust anchors (%s); this pod's proxy gets no "
                            "identity", exc)
        patch = pod_patch(pod, config, annotations)
        if patch is not None:
            self.injected += 1
            log.info("injected a pod in %s (%s)", namespace,
                     (pod.get("metadata") or {}).get("generateName") or
                     (pod.get("metadata") or {}).get("name"))
        return 200, review_response(review, patch)
