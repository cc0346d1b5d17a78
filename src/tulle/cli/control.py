"""``tulle control``: run the control plane against a cluster (or manifests on disk)."""

from __future__ import annotations

import asyncio
import datetime
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import uvloop

from tulle.config import Address, ConfigError, parse_duration

if TYPE_CHECKING:
    from tulle.control.identity import IdentityService
    from tulle.control.webhook import InjectionWebhook
    from tulle.discovery.kubernetes import KubernetesSource


@click.command()
@click.option("--listen", default="127.0.0.1:8086", show_default=True, metavar="HOST:PORT",
              help="Where the destination API listens (0.0.0.0:8086 in a cluster).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Watch the cluster this kubeconfig names [$KUBECONFIG, ~/.kube/config].")
@click.option("--context", "context_name", help="The kubeconfig context to use [current].")
@click.option("--in-cluster", is_flag=True,
              help="Watch the cluster this Pod runs in, as its service account.")
@click.option("-f", "--filename", "manifests", type=click.Path(exists=True, path_type=Path),
              help="Serve manifests from disk instead of a cluster.")
@click.option("--namespace", help="Watch only this namespace [all namespaces].")
@click.option("--webhook-listen", metavar="HOST:PORT",
              help="Serve the admission webhook that injects the proxy here, over TLS.")
@click.option("--webhook-cert-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The webhook's tls.crt and tls.key (the chart mounts its Secret).")
@click.option("--inject-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="What the webhook injects (the chart's tulle-inject ConfigMap) "
                   "[the chart's defaults].")
@click.option("--identity-listen", metavar="HOST:PORT",
              help="Serve the identity service (proxies' certificates) here, over TLS.")
@click.option("--identity-issuer-dir", type=click.Path(exists=True, file_okay=False,
                                                       path_type=Path),
              help="The issuer: tls.crt, tls.key and ca.crt (the trust anchors); the chart "
                   "mounts its Secret; off Kubernetes, tulle identity issuer makes one.")
@click.option("--join-tokens", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Authenticate proxies by the join tokens in this file [on a cluster: "
                   "their ServiceAccount tokens, by TokenReview].")
@click.option("--trust-domain", default="cluster.local", show_default=True,
              help="The mesh's trust domain (in every identity issued).")
@click.option("--identity-leaf-lifetime", default="24h", show_default=True, metavar="DURATION",
              help="How long the certificates issued to proxies are valid (renewed at 70%).")
@click.option("--control-namespace", default="tulle", show_default=True,
              envvar="TULLE_CONTROL_NAMESPACE",
              help="The control plane's namespace: its own identity is tulle-control there.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def control(listen: str, kubeconfig: Path | None, context_name: str | None, in_cluster: bool,
            manifests: Path | None, namespace: str | None, webhook_listen: str | None,
            webhook_cert_dir: Path | None, inject_config: Path | None,
            identity_listen: str | None, identity_issuer_dir: Path | None,
            join_tokens: Path | None, trust_domain: str, identity_leaf_lifetime: str,
            control_namespace: str, log_level: str) -> None:
    """Watch Services, EndpointSlices and Tulle's CRDs; stream them to proxies."""
    from tulle.control import ControlPlane
    from tulle.discovery import ConfigSource, DnsSource, ManifestSource
    from tulle.discovery.kubernetes import KubernetesSource
    from tulle.discovery.kubernetes_access import AccessError, from_kubeconfig
    from tulle.discovery.kubernetes_access import in_cluster as pod
    from tulle.identity.issuer import IssuerError

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        address = Address.parse(listen, allow_port_zero=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    webhook_address = None
    if webhook_listen is not None:
        if webhook_cert_dir is None:
            raise click.UsageError("--webhook-listen needs --webhook-cert-dir")
        try:
            webhook_address = Address.parse(webhook_listen, allow_port_zero=True)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--webhook-listen") from None

    identity_address = None
    if identity_listen is not None:
        if identity_issuer_dir is None:
            raise click.UsageError("--identity-listen needs --identity-issuer-dir")
        if join_tokens is None and manifests is not None:
            raise click.UsageError("--identity-listen off a cluster needs --join-tokens")
        try:
            identity_address = Address.parse(identity_listen, allow_port_zero=True)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--identity-listen") from None
    try:
        leaf_lifetime = datetime.timedelta(seconds=parse_duration(identity_leaf_lifetime))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--identity-leaf-lifetime") from None

    async def run() -> None:
        loop = asyncio.get_running_loop()
        source: ConfigSource
        cluster: KubernetesSource | None = None
        if manifests is not None:
            source = ManifestSource(loop, manifests)
        else:
            access = pod() if in_cluster else await from_kubeconfig(kubeconfig, context_name)
            source = cluster = KubernetesSource(access, namespace=namespace,
                                                      trust_domain=trust_domain)
        source = DnsSource(source)  # services with spec.dns: endpoints from DNS
        plane = ControlPlane(source)
        await plane.start(address.host, address.port)
        webhook = None
        if webhook_address is not None:
            webhook = await _start_webhook(webhook_address, webhook_cert_dir, inject_config,
                                           cluster, identity_issuer_dir)
        identity_service = None
        if identity_address is not None:
            assert identity_issuer_dir is not None
            identity_service = await _start_identity(
                identity_address, identity_issuer_dir, join_tokens, cluster, trust_domain,
                control_namespace, leaf_lifetime)
        stopped = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        loop.add_signal_handler(signal.SIGHUP, source.refresh, "SIGHUP")
        await stopped.wait()
        if webhook is not None:
            webhook.stop()
        if identity_service is not None:
            identity_service.stop()
        await plane.stop()
        if cluster is not None:
            await cluster.aclose()  # wait for the watches and the client to close

    try:
        uvloop.run(run())
    except (ConfigError, AccessError, IssuerError) as exc:
        click.echo(f"tulle control: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"tulle control: {exc}", err=True)
        sys.exit(1)


async def _start_webhook(address: Address, cert_dir: Path | None, inject_config: Path | None,
                         cluster: KubernetesSource | None, issuer_dir: Path | None
                         ) -> InjectionWebhook:
    """The admission webhook, reading namespace annotations from the watched cluster and
    the trust anchors it gives proxies from the identity issuer's ca.crt."""
    import yaml

    from tulle.control.webhook import InjectionWebhook, server_context
    from tulle.kube.inject import InjectConfig

    assert cert_dir is not None
    config = (InjectConfig.from_document(yaml.safe_load(inject_config.read_text()))
              if inject_config is not None else InjectConfig.from_chart())

    async def namespace_annotations(name: str) -> dict[str, str]:
        if cluster is None:
            return {}
        answer = await cluster.api.get(f"/api/v1/namespaces/{name}")
        return (answer.get("metadata") or {}).get("annotations") or {}

    anchors = None if issuer_dir is None else (issuer_dir / "ca.crt").read_text
    webhook = InjectionWebhook(config, namespace_annotations, anchors)
    await webhook.start(address.host, address.port, server_context(cert_dir))
    return webhook


async def _start_identity(address: Address, issuer_dir: Path, join_tokens: Path | None,
                          cluster: KubernetesSource | None, trust_domain: str,
                          control_namespace: str, leaf_lifetime: datetime.timedelta
                          ) -> IdentityService:
    """The identity service: join tokens from a file, else TokenReviews on the cluster."""
    from tulle.control.identity import CONTROL_SERVICE_ACCOUNT, Authenticator, IdentityService
    from tulle.identity.issuer import IssuerStore
    from tulle.identity.spiffe import WorkloadIdentity

    authenticator: Authenticator
    if join_tokens is not None:
        from tulle.identity.join_tokens import JoinTokens

        authenticator = JoinTokens(join_tokens, trust_domain)
    else:
        from tulle.control.token_review import TokenReviewer

        assert cluster is not None
        authenticator = TokenReviewer(cluster.api, trust_domain)
    service = IdentityService(
        IssuerStore(issuer_dir, leaf_lifetime=leaf_lifetime), authenticator,
        WorkloadIdentity(trust_domain, control_namespace, CONTROL_SERVICE_ACCOUNT))
    await service.start(address.host, address.port)
    return service
