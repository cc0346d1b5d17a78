"""mTLS between two proxies: what it costs, beside plaintext and beside HAProxy with ``ssl``.

Each *pair* is two proxies in a row, as two meshed pods would have them: wrk → the
first proxy (the caller's, outbound) → the second (the callee's, inbound) → nginx. The
pairs, measured side by side in one run and interleaved over rounds:

- **tulle** — two Tulle proxies, plaintext between them (no identity);
- **tulle-mtls** — the same with identities from a real ``tulle control`` identity
  service (join tokens): TLS 1.3 between the proxies, client certificates required,
  the server's identity checked; default inbound policy (all-unauthenticated);
- **tulle-mtls-policy** — as tulle-mtls, and the inbound side authorizes each request
  by the caller's identity (Server + AuthorizationPolicy + MeshTLSAuthentication) and
  checks a local rate limit (HTTPLocalRateLimitPolicy: total and per identity, set far
  above the load so it never refuses): the per-request cost of inbound policy;
- **haproxy** — two HAProxy instances, plaintext between them;
- **haproxy-ssl** — the same with ``ssl`` on both sides: the second binds with
  ``ssl crt … ca-file … verify required`` (TLS 1.3 only), the first's server line has
  ``ssl crt … ca-file … verify required verifyhost …`` with the same certificates;
- **direct** — wrk straight to nginx.

Measured: throughput (``wrk -t1 -c32``), latency at 1,000 requests/s (hey), and the CPU
both proxies of a pair use per request. Connections between the proxies are kept
alive and reused (Tulle's pools, HAProxy's ``http-reuse always``), so the handshakes are
paid once and what is measured is the record layer. Both proxies of a pair run on the
proxy CPU; wrk, hey and nginx on the others.

Inbound policy and the rate limiter are also timed in-process, layer by layer, with no
network (a microbenchmark of the per-request decision).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import Harness
from bench.peers import Backends, Peer, PeerFailed, render_haproxy
from bench.processes import Started, cpu_seconds, free_ports, wait_until
from bench.report import Report, Table
from bench.stats import LatencySummary, median
from bench.tools import find_tool

DESCRIPTION = "mTLS between two proxies: Tulle plaintext, Tulle mTLS (+ policy), HAProxy, " \
              "HAProxy ssl; throughput, latency, CPU; the policy layers in-process"
TOOLS: tuple[str, ...] = ("haproxy", "nginx", "wrk", "hey", "tulle")

CONNECTIONS = 32
RATE = 1_000
TRUST_DOMAIN = "bench.local"
SERVER_NAME = f"web.shop.serviceaccount.identity.{TRUST_DOMAIN}"
PAIRS = ("tulle", "tulle-mtls", "tulle-mtls-policy", "haproxy", "haproxy-ssl", "direct")
# Each TLS pair beside its plaintext sibling.
SIBLINGS = {"tulle-mtls": "tulle", "tulle-mtls-policy": "tulle", "haproxy-ssl": "haproxy"}


@dataclass(frozen=True)
class Settings:
    rounds: int
    warmup_seconds: int
    throughput_seconds: int
    latency_seconds: float
    micro_calls: int


FULL = Settings(rounds=3, warmup_seconds=2, throughput_seconds=10, latency_seconds=10.0,
                micro_calls=200_000)
QUICK = Settings(rounds=1, warmup_seconds=0, throughput_seconds=1, latency_seconds=1.0,
                 micro_calls=20_000)


@dataclass
class Pair:
    """Two proxies in a row (or none, for direct): where wrk sends, what to measure."""

    name: str
    entry: Peer
    processes: list[Started] = field(default_factory=list)

    def cpu(self) -> float | None:
        if not self.processes:
            return None
        return sum(cpu_seconds(process.popen.pid) for process in self.processes)


# ---------------------------------------------------------------- trust material


@dataclass
class Trust:
    """An anchor, an issuer it signs, join tokens, and leaves for HAProxy."""

    folder: Path
    tokens: Path
    anchors: Path
    issuer_dir: Path
    web_pem: Path  # certificate, chain and key of web (for HAProxy)
    cli_pem: Path

    @classmethod
    def make(cls, folder: Path) -> Trust:
        import datetime

        from cryptography.hazmat.primitives import serialization

        from tulle.identity.certificates import CertificateAuthority
        from tulle.identity.credentials import new_key, signing_request
        from tulle.identity.issuer import write_issuer
        from tulle.identity.spiffe import WorkloadIdentity

        folder.mkdir(parents=True, exist_ok=True)
        anchor = CertificateAuthority.generate("bench trust anchor")
        issuer = anchor.issue_issuer("bench issuer")
        write_issuer(folder / "issuer", issuer, anchor.cert_pem)
        (folder / "anchors.pem").write_bytes(anchor.cert_pem)
        pems = {}
        for account in ("web", "cli"):
            key = new_key()
            leaf = issuer.certify(signing_request(key), WorkloadIdentity(
                TRUST_DOMAIN, "shop", account), datetime.timedelta(hours=24))
            path = folder / f"{account}.pem"
            path.write_bytes(leaf + issuer.chain_pem + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            pems[account] = path
        return cls(folder, folder / "join-tokens", folder / "anchors.pem", folder / "issuer",
                   pems["web"], pems["cli"])

    def token_for(self, account: str) -> Path:
        from tulle.identity.join_tokens import new_token

        token = new_token()
        with self.tokens.open("a") as tokens:
            tokens.write(f"{token} shop/{account}\n")
        path = self.folder / f"token-{account}-{token[:6]}"
        path.write_text(token)
        return path


def _start_identity_service(harness: Harness, trust: Trust) -> int:
    trust.tokens.touch()
    manifests = harness.workdir / "control-manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "mesh.yaml").write_text(
        "apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n")
    destination, identity = free_ports(2)
    process = harness.group.start("tulle-control", [
        find_tool("tulle"), "control", "-f", str(manifests),
        "--listen", f"127.0.0.1:{destination}", "--identity-listen", f"127.0.0.1:{identity}",
        "--identity-issuer-dir", str(trust.issuer_dir), "--join-tokens", str(trust.tokens),
        "--trust-domain", TRUST_DOMAIN], harness.pinning.others)
    _wait_listening(process, identity)
    return identity


# ---------------------------------------------------------------- the pairs


POLICY = """---
apiVersion: policy.tulle.dev/v1alpha1
kind: Server
metadata: {{name: web-http, namespace: shop}}
spec: {{podSelector: {{matchLabels: {{app: web}}}}, port: {port}}}
---
apiVersion: policy.tulle.dev/v1alpha1
kind: MeshTLSAuthentication
metadata: {{name: callers, namespace: shop}}
spec: {{identityRefs: [{{kind: ServiceAccount, name: cli}}]}}
---
apiVersion: policy.tulle.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: cli-calls-web, namespace: shop}}
spec:
  targetRef: {{group: policy.tulle.dev, kind: Server, name: web-http}}
  requiredAuthenticationRefs: [{{kind: MeshTLSAuthentication, name: callers}}]
---
apiVersion: policy.tulle.dev/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: {{name: web-limits, namespace: shop}}
spec:
  targetRef: {{group: policy.tulle.dev, kind: Server, name: web-http}}
  total: {{requestsPerSecond: 1000000}}
  identity: {{requestsPerSecond: 1000000}}
"""


def _tulle(harness: Harness, name: str, args: list[str], manifest: str,
           admin_ready: bool = True) -> tuple[Started, int, int]:
    """A ``tulle proxy`` on ``manifest``; its process, outbound and inbound ports."""
    folder = harness.workdir / f"{name}-manifests"
    folder.mkdir(exist_ok=True)
    (folder / "mesh.yaml").write_text(manifest)
    outbound, inbound, admin = free_ports(3)
    process = harness.group.start(name, [
        find_tool("tulle"), "proxy", "-f", str(folder), "--outbound", f"127.0.0.1:{outbound}",
        "--inbound", f"127.0.0.1:{inbound}", "--admin", f"127.0.0.1:{admin}", *args],
        harness.pinning.proxy)
    _wait_listening(process, admin)
    return process, outbound, inbound


def _tulle_pair(harness: Harness, name: str, backend: str, trust: Trust | None,
                identity_port: int, policy: bool) -> Pair:
    def identity(account: str) -> list[str]:
        if trust is None:
            return []
        return ["--identity-address", f"127.0.0.1:{identity_port}", "--identity-token-file",
                str(trust.token_for(account)), "--trust-anchors", str(trust.anchors),
                "--trust-domain", TRUST_DOMAIN]

    app_port = backend.rsplit(":", 1)[1]
    mesh = ("apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"
            "spec: {proxy: {workload: {namespace: shop, labels: {app: web}}}}\n")
    callee, _, inbound = _tulle(harness, f"{name}-in", ["--app", backend, *identity("web")],
                                mesh + (POLICY.format(port=app_port) if policy else ""))
    meshed = f', identity: "spiffe://{TRUST_DOMAIN}/ns/shop/sa/web"' if trust else ""
    service = ("apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {name: bench}\n"
               f"spec:\n  endpoints:\n    - {{address: \"127.0.0.1:{inbound}\"{meshed}}}\n")
    caller, outbound, _ = _tulle(harness, f"{name}-out", identity("cli"), service)
    return Pair(name, Peer(name, "127.0.0.1", outbound, caller), [caller, callee])


def _haproxy_pair(harness: Harness, name: str, backend: str, trust: Trust | None) -> Pair:
    entry, middle = free_ports(2)
    if trust is None:
        client_side, server_bind = "", ""
    else:
        client_side = (f"ssl verify required ca-file {trust.anchors} crt {trust.cli_pem} "
                       f"sni str({SERVER_NAME}) verifyhost {SERVER_NAME} ssl-min-ver TLSv1.3 "
                       "alpn http/1.1")
        server_bind = (f" ssl crt {trust.web_pem} ca-file {trust.anchors} verify required "
                       "ssl-min-ver TLSv1.3 alpn http/1.1")
    callee_conf = harness.workdir / f"{name}-in.cfg"
    callee_conf.write_text(render_haproxy(middle, [backend]).replace(
        f"bind 127.0.0.1:{middle}", f"bind 127.0.0.1:{middle}{server_bind}"))
    caller_conf = harness.workdir / f"{name}-out.cfg"
    caller_conf.write_text(render_haproxy(entry, [f"127.0.0.1:{middle}"], client_side))
    processes = []
    for role, conf, port in (("in", callee_conf, middle), ("out", caller_conf, entry)):
        process = harness.group.start(f"{name}-{role}",
                                      [find_tool("haproxy"), "-f", str(conf), "-db"],
                                      harness.pinning.proxy)
        _wait_listening(process, port)
        processes.append(process)
    return Pair(name, Peer(name, "127.0.0.1", entry, processes[1]), processes)


def _wait_listening(process: Started, port: int) -> None:
    import socket

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return process.popen.poll() is not None

    wait_until(listening, 30.0)
    if process.popen.poll() is not None:
        raise PeerFailed(f"{process.name} exited: {process.log_tail()}")


def _start_pairs(harness: Harness, backends: Backends) -> list[Pair]:
    trust = Trust.make(harness.workdir / "trust")
    identity_port = _start_identity_service(harness, trust)
    backend = backends.endpoints[0]
    pairs = [
        _tulle_pair(harness, "tulle", backend, None, identity_port, policy=False),
        _tulle_pair(harness, "tulle-mtls", backend, trust, identity_port, policy=False),
        _tulle_pair(harness, "tulle-mtls-policy", backend, trust, identity_port, policy=True),
        _haproxy_pair(harness, "haproxy", backend, None),
        _haproxy_pair(harness, "haproxy-ssl", backend, trust),
    ]
    host, port = backends.addresses[0]
    pairs.append(Pair("direct", Peer("direct", host, port, None)))
    for pair in pairs:  # every pair answers through both hops before anything is measured
        wait_until(lambda p=pair: _answers(p), 30.0)
        if not _answers(pair):
            raise PeerFailed(f"{pair.name} does not answer 200 through both proxies")
    return pairs


def _answers(pair: Pair) -> bool:
    import urllib.request

    request = urllib.request.Request(f"http://{pair.entry.host}:{pair.entry.port}/",
                                     headers={"Host": "bench"})
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


# ---------------------------------------------------------------- measuring


def run(harness: Harness, quick: bool) -> Report:
    settings = QUICK if quick else FULL
    backends = harness.start_backends(1)
    pairs = _start_pairs(harness, backends)
    report = Report(scenario="mtls", title="mTLS between two proxies",
                    description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else DESCRIPTION)
    for pair in pairs if settings.warmup_seconds else []:
        harness.wrk(pair.entry, settings.warmup_seconds, CONNECTIONS)
    rps: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    latency: dict[str, list[LatencySummary]] = defaultdict(list)
    for round_number in range(1, settings.rounds + 1):
        for pair in pairs:
            before = pair.cpu()
            result = harness.wrk(pair.entry, settings.throughput_seconds, CONNECTIONS)
            after = pair.cpu()
            rps[pair.name].append(result.requests_per_second)
            errors[pair.name] += result.non_2xx + result.socket_errors
            if before is not None and after is not None and result.requests:
                cpu[pair.name].append((after - before) / result.requests * 1e6)
            harness.log(f"round {round_number}/{settings.rounds} {pair.name}: "
                        f"{result.requests_per_second:,.0f} req/s")
        for pair in pairs:
            timed = harness.hey(pair.entry, settings.latency_seconds, RATE)
            errors[pair.name] += timed.non_2xx
            latency[pair.name].append(LatencySummary.of(sorted(timed.latencies)))
    report.tables.append(_throughput_table(pairs, rps, cpu, errors, settings))
    report.tables.append(_latency_table(pairs, latency, settings))
    report.tables.append(_micro_table(settings.micro_calls))
    report.notes.append(
        "CPU is the sum over both proxies of a pair, per request, in microseconds; its "
        "difference between a TLS pair and its plaintext sibling is what TLS costs per "
        "request (the record layer: the connections are reused).")
    return report


def _throughput_table(pairs: list[Pair], rps: dict[str, list[float]],
                      cpu: dict[str, list[float]], errors: dict[str, int],
                      settings: Settings) -> Table:
    best = {name: median(values) for name, values in rps.items()}
    cost = {name: median(values) for name, values in cpu.items() if values}
    table = Table(
        title="Throughput and CPU through two proxies (wrk -t1 -c32)",
        columns=["pair", "requests/s", "× plaintext sibling", "× haproxy-ssl",
                 "CPU µs per request (both proxies)", "TLS CPU µs per request", "errors"],
        note=f"{settings.throughput_seconds} s × {settings.rounds} rounds, medians.",
    )
    for pair in pairs:
        name = pair.name
        sibling = SIBLINGS.get(name)
        table.rows.append([
            name, f"{best[name]:,.0f}",
            f"{best[name] / best[sibling]:.3f}" if sibling else "-",
            f"{best[name] / best['haproxy-ssl']:.3f}",
            f"{cost[name]:.0f}" if name in cost else "-",
            f"{cost[name] - cost[sibling]:+.0f}" if sibling and name in cost else "-",
            str(errors[name]),
        ])
    return table


def _latency_table(pairs: list[Pair], latency: dict[str, list[LatencySummary]],
                   settings: Settings) -> Table:
    summary = {name: LatencySummary.median_of(rounds) for name, rounds in latency.items()}
    direct = summary["direct"]
    table = Table(
        title=f"Latency at {RATE:,} requests/s (hey)",
        columns=["pair", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms"],
        note=f"{settings.latency_seconds:g} s × {settings.rounds} rounds; each percentile's "
             "median over rounds; added: over direct.",
    )
    for pair in pairs:
        s = summary[pair.name]
        table.rows.append([pair.name, f"{s.p50 * 1e3:.2f}", f"{s.p99 * 1e3:.2f}",
                           f"{(s.p50 - direct.p50) * 1e3:.2f}",
                           f"{(s.p99 - direct.p99) * 1e3:.2f}"])
    return table


# ---------------------------------------------------------------- the layers alone


def _micro_table(calls: int) -> Table:
    """The inbound policy decisions' time per request, in-process (no network)."""
    table = Table(
        title="Inbound policy per request, in-process",
        columns=["what", "ns per request"],
        note=f"{calls:,} decisions, best of 5, the same client each time (its identity and "
             "address already remembered, as for a client's second and later requests); "
             "the layers around them add an attribute read or two, and the pair above "
             "measures them in place.",
    )
    for what, layer in _micro_layers():
        table.rows.append([what, f"{_time_per_call(layer, calls):.0f}"])
    return table


def _time_per_call(call: Callable[[], None], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls * 1e9)
    return best


def _micro_layers() -> list[tuple[str, Callable[[], None]]]:
    """(what, one request's decision) for each case timed: the calls the authorize and
    rate limit layers make, on a policy compiled from the same manifests as the pair's."""
    import tempfile
    import textwrap

    from tulle.config import load
    from tulle.config.schema_tulle import Workload
    from tulle.policy.compile import PolicyState
    from tulle.policy.rate_limit import NANOS
    from tulle.telemetry.metrics import Metrics

    def compiled(policy: str) -> PolicyState:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "policy.yaml").write_text(textwrap.dedent(policy))
            state = PolicyState(Metrics())
            state.trust_domain = TRUST_DOMAIN
            state.workload = Workload(namespace="shop", labels={"app": "web"})
            state.apply(load(folder, environ={}))
        return state

    identity, address = f"spiffe://{TRUST_DOMAIN}/ns/shop/sa/cli", b"10.1.2.3"
    default = compiled("apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\n"
                       "metadata: {name: default}\n").current
    policy = compiled(POLICY.format(port=8080)).current
    server = policy.server_for(8080)
    assert policy.decide(server.mask, identity, address), "the bench policy must admit cli"
    limit = server.rate_limit
    assert limit is not None
    clock = [1000 * NANOS]

    def open_server() -> None:
        found = default.server_for(8080)
        assert found.open is not None

    def by_identity() -> None:
        found = policy.server_for(8080)
        policy.decide(found.mask, identity, address)

    def limited() -> None:
        clock[0] += 1000
        limit.check(identity, clock[0])

    return [("default policy: the server's open authorization", open_server),
            ("Server + MeshTLSAuthentication: the decision by identity and address",
             by_identity),
            ("local rate limit: total + per identity, admitted", limited)]
