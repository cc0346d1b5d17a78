"""Adding the proxy to pods: the sidecar, the init container, and their settings.

Used by ``tulle inject`` (workloads in a YAML stream) and by the control plane's
admission webhook (each Pod as it is created). Both read one ``InjectConfig``: the
chart's values (deploy/helm/tulle/values.yaml, ``proxy`` section) plus the image
and the control plane's address, so a pod injected either way is the same.

What a pod gets (Linkerd's model):

- an init container ``tulle-init`` running ``tulle init`` with NET_ADMIN/NET_RAW,
  which installs the iptables rules that send the pod's TCP to the proxy;
- the sidecar ``tulle-proxy``, first among the containers, running ``tulle proxy
  --transparent --control …`` as UID 2102, with its readiness and liveness probes on
  the admin port and the resources of the values (or annotations);
- the annotation ``tulle.dev/proxy-version``;
- what the proxy's identity and inbound policy need (docs/security.md): a projected
  ServiceAccount token for audience ``identity.tulle.dev`` (`tulle.control.token_review`),
  the identity service's address and name, the trust anchors (``TULLE_TRUST_ANCHORS_PEM``),
  the pod's namespace and labels (downward API), its named container ports and its
  HTTP probes (which default policy lets through), and its default inbound policy.

Per-workload settings are annotations in the ``tulle.dev/`` namespace, mirroring
Linkerd's ``config.linkerd.io`` ones (``ANNOTATIONS``), read from the pod template
and then the workload. ``tulle.dev/inject: disabled`` leaves a pod alone, and a pod
that already has the sidecar is left as it is, so injecting twice changes nothing.
Opaque ports (the chart's ``proxy.opaquePorts``, or ``tulle.dev/opaque-ports``) are
captured like every other port and handed to the proxy as ``--opaque-ports``: their
connections are proxied as opaque TCP from the first byte (balanced per connection,
with TCP metrics), without protocol detection, so a server that speaks first (SMTP,
MySQL) is not kept waiting.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

# The audience of the token a proxy proves its identity with (tulle.control.token_review).
AUDIENCE = "identity.tulle.dev"

INJECT = "tulle.dev/inject"
PROXY_VERSION = "tulle.dev/proxy-version"
PROXY_CONTAINER = "tulle-proxy"
INIT_CONTAINER = "tulle-init"
# Annotation -> what it sets (as Linkerd's config.linkerd.io/<same name>).
ANNOTATIONS = {
    "tulle.dev/skip-inbound-ports": "ports the init container leaves to reach the app directly",
    "tulle.dev/skip-outbound-ports": "destination ports the app reaches directly",
    "tulle.dev/skip-outbound-ips": "destination CIDRs the app reaches directly",
    "tulle.dev/opaque-ports": "ports whose traffic is not HTTP, replacing the default list: "
                              "proxied as opaque TCP without protocol detection",
    "tulle.dev/proxy-cpu-request": "the sidecar's CPU request",
    "tulle.dev/proxy-memory-request": "the sidecar's memory request",
    "tulle.dev/proxy-cpu-limit": "the sidecar's CPU limit",
    "tulle.dev/proxy-memory-limit": "the sidecar's memory limit",
    "tulle.dev/proxy-log-level": "the sidecar's log level",
    "tulle.dev/default-inbound-policy": "inbound traffic to ports no Server selects: "
                                        "all-unauthenticated, all-authenticated, "
                                        "cluster-unauthenticated, cluster-authenticated, deny "
                                        "or audit (also read from the namespace)",
}
DEFAULT_INBOUND_POLICY = "tulle.dev/default-inbound-policy"
# Where the proxy's identity token and pod labels are mounted.
TOKEN_DIR = "/var/run/secrets/tulle.dev/identity"
PODINFO_DIR = "/var/run/tulle/podinfo"
TOKEN_VOLUME = "tulle-identity-token"
PODINFO_VOLUME = "tulle-podinfo"
# A day, as Linkerd's; the kubelet renews a projected token at 80% of its life.
TOKEN_SECONDS = 86400
_RESOURCES = {
    "tulle.dev/proxy-cpu-request": ("requests", "cpu"),
    "tulle.dev/proxy-memory-request": ("requests", "memory"),
    "tulle.dev/proxy-cpu-limit": ("limits", "cpu"),
    "tulle.dev/proxy-memory-limit": ("limits", "memory"),
}
# kind -> path from the object to its pod template (None: the object is a Pod).
WORKLOADS: dict[str, tuple[str, ...] | None] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": None,
}


@dataclass(frozen=True, slots=True)
class InjectConfig:
    """What the injected containers are: image, version, control plane and proxy values."""

    image: str
    version: str
    control_plane: str  # http://tulle-control.tulle.svc:8086
    proxy: dict[str, Any]
    image_pull_policy: str = "IfNotPresent"
    # The identity service: {address, serverName, trustDomain} (None: proxies get none).
    identity: dict[str, Any] | None = None
    # The trust anchors given to each proxy (the webhook reads the issuer's ca.crt;
    # ``tulle inject --trust-anchors``); empty: proxies cannot verify the identity service.
    trust_anchors_pem: str = ""

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> InjectConfig:
        """From the chart's ``tulle-inject`` ConfigMap (``inject.yaml``)."""
        return cls(image=document["image"], version=str(document["version"]),
                   control_plane=document["controlPlane"], proxy=document["proxy"],
                   image_pull_policy=document.get("imagePullPolicy", "IfNotPresent"),
                   identity=document.get("identity"))

    @classmethod
    def from_chart(cls, namespace: str = "tulle") -> InjectConfig:
        """What the chart's default values give, with the control plane in ``namespace``."""
        from tulle.kube.chart import chart_metadata, default_values

        values, version = default_values(), str(chart_metadata()["appVersion"])
        image = values["image"]
        port = values["controlPlane"]["port"]
        identity = values["identity"]
        domain = identity["trustDomain"]
        return cls(image=f"{image['repository']}:{image['tag'] or version}", version=version,
                   control_plane=f"http://tulle-control.{namespace}.svc:{port}",
                   proxy=values["proxy"], image_pull_policy=image["pullPolicy"],
                   identity={"address": f"tulle-control.{namespace}.svc:{identity['port']}",
                             "serverName": f"tulle-control.{namespace}.serviceaccount."
                                           f"identity.{domain}",
                             "trustDomain": domain})


def _annotations(*sources: dict[str, Any] | None) -> dict[str, str]:
    """Annotations of the first source that sets each one (pod template, then workload)."""
    merged: dict[str, str] = {}
    for metadata in reversed(sources):
        merged.update((metadata or {}).get("annotations") or {})
    return merged


def _joined(*parts: str) -> str:
    """Comma-separated lists as one, each item once, in order."""
    items = (item.strip() for part in parts for item in part.split(","))
    return ",".join(dict.fromkeys(item for item in items if item))


def _init_container(config: InjectConfig, annotations: dict[str, str]) -> dict[str, Any]:
    proxy, ports = config.proxy, config.proxy["ports"]
    skip_inbound = _joined("4190", str(ports["admin"]), proxy.get("skipInboundPorts", ""),
                           annotations.get("tulle.dev/skip-inbound-ports", ""))
    skip_outbound = _joined(proxy.get("skipOutboundPorts", ""),
                            annotations.get("tulle.dev/skip-outbound-ports", ""))
    skip_ips = _joined(proxy.get("skipOutboundIPs", ""),
                       annotations.get("tulle.dev/skip-outbound-ips", ""))
    args = ["init", f"--proxy-uid={proxy['uid']}", f"--inbound-port={ports['inbound']}",
            f"--outbound-port={ports['outbound']}", f"--skip-inbound-ports={skip_inbound}"]
    if skip_outbound:
        args.append(f"--skip-outbound-ports={skip_outbound}")
    if skip_ips:
        args.append(f"--skip-outbound-cidrs={skip_ips}")
    return {
        "name": INIT_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "args": args,
        "resources": {"requests": {"cpu": "10m", "memory": "20Mi"},
                      "limits": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": {
            "runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    }


def _identity_env(config: InjectConfig, annotations: dict[str, str],
                  spec: dict[str, Any]) -> list[dict[str, Any]]:
    """What the proxy learns from its pod: identity, workload, probes, default policy."""
    policy = annotations.get(DEFAULT_INBOUND_POLICY,
                             config.proxy.get("defaultInboundPolicy", "all-unauthenticated"))
    env: list[dict[str, Any]] = [
        {"name": "TULLE_WORKLOAD_NAMESPACE",
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TULLE_WORKLOAD_LABELS_FILE", "value": f"{PODINFO_DIR}/labels"},
        {"name": "TULLE_DEFAULT_INBOUND_POLICY", "value": policy},
    ]
    ports, probes = _ports_and_probes(spec)
    if ports:
        env.append({"name": "TULLE_WORKLOAD_PORTS", "value": ports})
    if probes:
        env.append({"name": "TULLE_PROBES", "value": probes})
    identity = config.identity
    if identity and config.trust_anchors_pem:
        env += [
            {"name": "TULLE_IDENTITY_ADDRESS", "value": identity["address"]},
            {"name": "TULLE_IDENTITY_SERVER_NAME", "value": identity["serverName"]},
            {"name": "TULLE_TRUST_DOMAIN", "value": identity["trustDomain"]},
            {"name": "TULLE_IDENTITY_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
            {"name": "TULLE_TRUST_ANCHORS_PEM", "value": config.trust_anchors_pem},
        ]
    return env


def _ports_and_probes(spec: dict[str, Any]) -> tuple[str, str]:
    """The app containers' named ports (``name=port,…``) and HTTP probes (``port:path,…``)."""
    named: dict[str, int] = {}
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") and isinstance(port.get("containerPort"), int):
                named.setdefault(port["name"], port["containerPort"])
    probes = []
    for container in spec.get("containers") or []:
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = (container.get(kind) or {}).get("httpGet")
            if not isinstance(get, dict):
                continue
            port = get.get("port")
            number = named.get(port) if isinstance(port, str) else port
            if isinstance(number, int):
                probes.append(f"{number}:{get.get('path') or '/'}")
    return (",".join(f"{name}={number}" for name, number in named.items()),
            ",".join(dict.fromkeys(probes)))


def _volumes(config: InjectConfig) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": PODINFO_VOLUME, "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]
    if config.identity and config.trust_anchors_pem:
        volumes.append({"name": TOKEN_VOLUME, "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": AUDIENCE,
                                     "expirationSeconds": TOKEN_SECONDS}}]}})
    return volumes


def _proxy_container(config: InjectConfig, annotations: dict[str, str],
                     spec: dict[str, Any]) -> dict[str, Any]:
    proxy, ports = config.proxy, config.proxy["ports"]
    resources = copy.deepcopy(proxy.get("resources") or {})
    for annotation, (section, name) in _RESOURCES.items():
        if annotation in annotations:
            resources.setdefault(section, {})[name] = annotations[annotation]
    log_level = annotations.get("tulle.dev/proxy-log-level", proxy.get("logLevel", "info"))
    opaque = _joined(annotations.get("tulle.dev/opaque-ports", proxy.get("opaquePorts", "")))
    probe = {"httpGet": {"path": "/ready", "port": ports["admin"]}, "periodSeconds": 5}
    return {
        "name": PROXY_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "args": ["proxy", "--transparent", f"--control={config.control_plane}",
                 f"--outbound=127.0.0.1:{ports['outbound']}",
                 f"--inbound=0.0.0.0:{ports['inbound']}", f"--admin=0.0.0.0:{ports['admin']}",
                 f"--opaque-ports={opaque}", f"--log-level={log_level}"],
        "ports": [{"name": "tulle-proxy", "containerPort": ports["inbound"]},
                  {"name": "tulle-admin", "containerPort": ports["admin"]}],
        "env": _identity_env(config, annotations, spec),
        "volumeMounts": [{"name": volume["name"], "readOnly": True,
                          "mountPath": TOKEN_DIR if volume["name"] == TOKEN_VOLUME
                          else PODINFO_DIR} for volume in _volumes(config)],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "httpGet": {"path": "/live", "port": ports["admin"]}},
        "resources": resources,
        "securityContext": {
            "runAsUser": proxy["uid"], "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        },
    }


def injected(pod_spec: dict[str, Any]) -> bool:
    """Whether the pod already has the sidecar."""
    return any(container.get("name") == PROXY_CONTAINER
               for container in pod_spec.get("containers") or [])


def inject_pod(metadata: dict[str, Any], spec: dict[str, Any], config: InjectConfig,
               workload: dict[str, Any] | None = None,
               namespace: dict[str, Any] | None = None) -> bool:
    """Add the proxy to a pod (its metadata and spec, changed in place).

    ``workload`` is the owning object's metadata, whose annotations count after the
    pod's, and ``namespace`` its namespace's, which count last. False when nothing was
    changed: disabled, or already injected."""
    annotations = _annotations(metadata, workload, namespace)
    if annotations.get(INJECT) == "disabled" or injected(spec):
        return False
    spec["initContainers"] = [_init_container(config, annotations),
                              *(spec.get("initContainers") or [])]
    spec["containers"] = [_proxy_container(config, annotations, spec),
                          *(spec.get("containers") or [])]
    spec["volumes"] = [*(spec.get("volumes") or []), *_volumes(config)]
    metadata.setdefault("annotations", {})[PROXY_VERSION] = config.version
    return True


def inject_object(obj: Any, config: InjectConfig) -> Any:
    """A copy of one manifest object with its pods injected; other kinds come back as
    they are (a ``List`` has each of its items injected)."""
    if not isinstance(obj, dict):
        return obj
    if obj.get("kind") == "List" and isinstance(obj.get("items"), list):
        return {**obj, "items": [inject_object(item, config) for item in obj["items"]]}
    kind = obj.get("kind")
    if kind not in WORKLOADS:
        return obj
    result = copy.deepcopy(obj)
    path = WORKLOADS[kind]
    template = result
    for step in path or ():
        template = template.setdefault(step, {})
    workload = result.get("metadata") if path is not None else None
    changed = inject_pod(template.setdefault("metadata", {}), template.setdefault("spec", {}),
                         config, workload)
    return result if changed else obj
