"""``tulle check --cluster``: the checks a Linkerd user knows from ``linkerd check``.

- the CRDs are installed (and established);
- the control plane's Deployment is ready;
- the webhook is reachable: a Pod annotated ``tulle.dev/inject: enabled`` is created
  with a server-side dry run (nothing is stored) and must come back with the sidecar.
  With ``failurePolicy: Ignore`` an unreachable webhook fails nothing else, so this is
  the only way to see it;
- every meshed pod's proxy is ready and on the control plane's version (pods being
  deleted are not counted).

Imported only by ``tulle check`` when asked for the cluster, so the Kubernetes client
stays out of every other command.
"""

from __future__ import annotations

from typing import Any

from tulle.cli.check import Result
from tulle.discovery.kubernetes_api import ApiError, KubeApi
from tulle.kube.crds import crd_files
from tulle.kube.inject import PROXY_CONTAINER, PROXY_VERSION

CONTROL_PLANE = "tulle-control"
VERSION_LABEL = "app.kubernetes.io/version"


async def check_crds(api: KubeApi) -> Result:
    names = sorted(name.split("_", 1)[1].removesuffix(".yaml") + "." + name.split("_", 1)[0]
                   for name in crd_files())
    missing, pending = [], []
    for name in names:
        try:
            crd = await api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            missing.append(name)
            continue
        conditions = (crd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions):
            pending.append(name)
    if missing:
        return Result(False, "CRDs missing: " + ", ".join(missing) +
                      " (tulle install | kubectl apply -f -, or helm install)")
    if pending:
        return Result(False, "CRDs not established yet: " + ", ".join(pending))
    return Result(True, f"CRDs are installed ({', '.join(names)})")


async def check_control_plane(api: KubeApi, namespace: str) -> tuple[Result, str | None]:
    """The control plane's readiness, and its version (for the proxies' check)."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{CONTROL_PLANE}"
    try:
        deployment = await api.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return Result(False, f"no control plane: deployment {namespace}/{CONTROL_PLANE} "
                                 "does not exist"), None
        raise
    version = ((deployment.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL)
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    ready = (deployment.get("status") or {}).get("readyReplicas", 0)
    if ready < max(wanted, 1):
        return Result(False, f"control plane {namespace}/{CONTROL_PLANE} is not ready "
                             f"({ready}/{wanted} replicas ready)"), version
    return Result(True, f"control plane {namespace}/{CONTROL_PLANE} is ready "
                        f"({ready}/{wanted} replicas, version {version})"), version


async def check_webhook(api: KubeApi, namespace: str, probe_namespace: str) -> Result:
    configuration = f"tulle-inject-{namespace}"
    try:
        await api.get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                      + configuration)
    except ApiError as exc:
        if exc.status == 404:
            return Result(False, f"webhook configuration {configuration} does not exist")
        raise
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "generateName": "tulle-check-", "annotations": {"tulle.dev/inject": "enabled"}},
        "spec": {"containers": [{"name": "check", "image": "tulle-check"}]}}
    created = await api.call("POST", f"/api/v1/namespaces/{probe_namespace}/pods?dryRun=All",
                             pod)
    names = [c.get("name") for c in (created.get("spec") or {}).get("containers") or []]
    if PROXY_CONTAINER not in names:
        return Result(False, f"webhook {configuration} is not reachable: a pod created in "
                             f"{probe_namespace} (dry run) came back without {PROXY_CONTAINER}"
                             " (failurePolicy Ignore hides why: see the control plane's log)")
    return Result(True, f"webhook {configuration} is reachable (a dry-run pod in "
                        f"{probe_namespace} was injected)")


def _proxy_problem(pod: dict[str, Any], version: str | None) -> str | None:
    metadata = pod.get("metadata") or {}
    name = f"{metadata.get('namespace')}/{metadata.get('name')}"
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if s.get("name") == PROXY_CONTAINER), None)
    if status is None or not status.get("ready"):
        return f"{name}: proxy not ready"
    proxy_version = (metadata.get("annotations") or {}).get(PROXY_VERSION)
    if version is not None and proxy_version != version:
        return f"{name}: proxy version {proxy_version}, control plane {version}"
    return None


async def check_proxies(api: KubeApi, version: str | None) -> Result:
    pods = (await api.get("/api/v1/pods")).get("items") or []
    meshed = [pod for pod in pods if not (pod.get("metadata") or {}).get("deletionTimestamp")
              and any(c.get("name") == PROXY_CONTAINER
                      for c in (pod.get("spec") or {}).get("containers") or [])]
    problems = [problem for pod in meshed if (problem := _proxy_problem(pod, version))]
    if problems:
        return Result(False, f"{len(problems)} of {len(meshed)} meshed pods have a problem:\n  "
                             + "\n  ".join(problems))
    return Result(True, f"{len(meshed)} meshed pods: every proxy is ready and on version "
                        f"{version}")


async def cluster_checks(api: KubeApi, namespace: str, probe_namespace: str) -> list[Result]:
    try:
        results = [await check_crds(api)]
        control, version = await check_control_plane(api, namespace)
        results.append(control)
        results.append(await check_webhook(api, namespace, probe_namespace))
        results.append(await check_proxies(api, version))
    except ApiError as exc:
        return [Result(False, f"the API server answered: {exc}")]
    return results
