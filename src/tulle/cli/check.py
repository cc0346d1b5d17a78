"""``tulle check``: pre-flight checks before (or while) running a proxy.

Each check prints one line, ✓ and what is fine, or ✗ and why not:

- the manifests load (``tulle.config.load``: every problem, with file and field);
- each listener's port is free, or is held by a running Tulle proxy (its admin
  answers ``/live``), which is what you want when checking a live system;
- the admin listener is alive and ready;
- Prometheus answers, when ``--prometheus URL`` is given, and scrapes something;
- with ``--cluster``: CRDs, control plane, webhook and meshed proxies
  (``tulle.cli.check_cluster``).

Exit status 1 if any check failed.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click

from tulle.config import ConfigError, load
from tulle.telemetry.scrape import fetch_metrics, split_address


@dataclass(frozen=True)
class Result:
    ok: bool
    text: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.text}"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def admin_page(admin: str, path: str) -> tuple[int, str]:
    host, port = split_address(admin)
    connection = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(65536).decode("utf-8", "replace")
    finally:
        connection.close()


def check_admin(admin: str) -> Result:
    try:
        live, _ = admin_page(admin, "/live")
        ready, _ = admin_page(admin, "/ready")
        fetch_metrics(admin)
    except OSError as exc:
        return Result(False, f"admin {admin} is not answering: {exc}")
    if live != 200:
        return Result(False, f"admin {admin} /live answered {live}")
    if ready != 200:
        return Result(False, f"admin {admin} is alive but not ready (/ready answered {ready})")
    return Result(True, f"admin {admin} is alive and ready; /metrics answers")


def check_listener(name: str, host: str, port: int, admin: str) -> Result:
    if port_free(host, port):
        return Result(True, f"{name} port {host}:{port} is free")
    try:
        ours = admin_page(admin, "/live")[0] == 200
    except OSError:
        ours = False
    if ours:
        return Result(True, f"{name} port {host}:{port} is bound by the running proxy "
                            f"(admin {admin} answers)")
    return Result(False, f"{name} port {host}:{port} is in use by another process")


def check_prometheus(url: str) -> Result:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.hostname is None:
        return Result(False, f"prometheus URL {url!r} has no host")
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 9090, timeout=3.0)
    base = parts.path.rstrip("/")
    try:
        connection.request("GET", f"{base}/api/v1/query?query=up")
        response = connection.getresponse()
        body = json.loads(response.read(1 << 20) or b"{}")
    except (OSError, ValueError) as exc:
        return Result(False, f"prometheus {url} is not answering: {exc}")
    finally:
        connection.close()
    if response.status != 200 or body.get("status") != "success":
        return Result(False, f"prometheus {url} answered {response.status} to a query")
    targets = body.get("data", {}).get("result", [])
    up = sum(1 for target in targets if target.get("value", [0, "0"])[1] == "1")
    if not targets:
        return Result(False, f"prometheus {url} answers but scrapes no target")
    return Result(True, f"prometheus {url} answers; {up}/{len(targets)} targets up")


def run_checks(manifests: Path | None, admin: str | None, prometheus: str | None) -> list[Result]:
    results: list[Result] = []
    if manifests is not None:
        try:
            config = load(manifests)
        except ConfigError as exc:
            results.append(Result(False, f"configuration {manifests} is invalid:\n{exc}"))
        else:
            results.append(Result(True, f"configuration {manifests} is valid "
                                        f"({len(config.services)} services)"))
            listen = config.mesh.proxy
            admin = admin or f"{listen.admin.host}:{listen.admin.port}"
            listeners = [("outbound", listen.outbound), ("admin", listen.admin)]
            if listen.app is not None:
                listeners.insert(1, ("inbound", listen.inbound))
            for name, address in listeners:
                results.append(check_listener(name, address.host, address.port, admin))
    results.append(check_admin(admin or "127.0.0.1:4191"))
    if prometheus:
        results.append(check_prometheus(prometheus))
    return results


@click.command()
@click.option("-f", "--filename", "manifests", type=click.Path(exists=True, path_type=Path),
              help="Manifests to validate and take listener ports from.")
@click.option("--admin", metavar="HOST:PORT",
              help="Admin address to check [manifests' or 127.0.0.1:4191].")
@click.option("--prometheus", metavar="URL", help="Check this Prometheus answers queries.")
@click.option("--cluster", is_flag=True,
              help="Check Tulle on a Kubernetes cluster instead: CRDs, control plane, webhook, "
                   "meshed proxies.")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --cluster: the kubeconfig [$KUBECONFIG, ~/.kube/config].")
@click.option("--context", "context_name", help="With --cluster: the kubeconfig context.")
@click.option("-n", "--namespace", default="tulle", show_default=True,
              help="With --cluster: the control plane's namespace.")
@click.option("--probe-namespace", default="default", show_default=True,
              help="With --cluster: where the webhook check creates its dry-run pod.")
def check(manifests: Path | None, admin: str | None, prometheus: str | None, cluster: bool,
          kubeconfig: Path | None, context_name: str | None, namespace: str,
          probe_namespace: str) -> None:
    """Pre-flight checks: configuration, ports, admin, Prometheus; or, with --cluster, Tulle
    on a Kubernetes cluster. Exit 1 if any fails."""
    if admin is not None:
        try:
            split_address(admin)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--admin") from None
    if cluster:
        results = _cluster(kubeconfig, context_name, namespace, probe_namespace)
    else:
        results = run_checks(manifests, admin, prometheus)
    for result in results:
        click.echo(result.line())
    failed = sum(1 for result in results if not result.ok)
    click.echo(f"\n{len(results) - failed}/{len(results)} checks passed.")
    if failed:
        raise SystemExit(1)


def _cluster(kubeconfig: Path | None, context_name: str | None, namespace: str,
             probe_namespace: str) -> list[Result]:
    import asyncio

    from tulle.cli.check_cluster import cluster_checks
    from tulle.discovery.kubernetes_access import AccessError, from_kubeconfig
    from tulle.discovery.kubernetes_api import KubeApi

    async def run() -> list[Result]:
        try:
            access = await from_kubeconfig(kubeconfig, context_name)
        except AccessError as exc:
            return [Result(False, str(exc))]
        async with KubeApi(access) as api:
            return await cluster_checks(api, namespace, probe_namespace)

    return asyncio.run(run())
