"""A whole outbound proxy in-process, on the fake loop: bytes in, bytes out, time on demand.

`ProxyKit` assembles the proxy from manifests the way ``tulle proxy`` does (mesh
state, request stack, listener) but on a `FakeLoop`, so a test plays the client and
the endpoints byte by byte and decides when each connect completes and when time
passes. It is the one place that knows how the proxy is put together: tests written
against it pin the proxy's behaviour through a rebuild of its insides.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.fake_loop import FakeLoop, FakeTransport, PendingConnect
from tulle.config import Config, load
from tulle.downstream import ClientConnection, ListenerContext
from tulle.proxy.mesh import MeshState
from tulle.proxy.outbound import listener_stack
from tulle.proxy.runtime import Runtime
from tulle.proxy.targets import Endpoint
from tulle.telemetry.metrics import Metrics
from tulle.telemetry.tap import TapHub
from tulle.transport.timers import TimerWheel


class ProxyKit:
    """The outbound side of one proxy over ``manifest`` (YAML text), on a fake loop."""

    def __init__(self, tmp_path: Path, manifest: str, *, head_timeout: float = 10.0) -> None:
        path = tmp_path / "manifest.yaml"
        path.write_text(textwrap.dedent(manifest).lstrip("\n"))
        self.config: Config = load(path, environ={})
        self.loop = FakeLoop()
        loop = self.loop  # a fake with the parts of the loop the proxy uses
        self.runtime = Runtime(loop, loop.clock, TimerWheel(loop, loop.clock))  # type: ignore[arg-type]
        self.metrics = Metrics()
        self.mesh = MeshState(self.runtime, self.metrics)
        self.mesh.apply(self.config)
        unknown = self.metrics.responses("outbound", "", "")
        self.tap = TapHub(clock=self.loop.time)
        self.ctx = ListenerContext(
            runtime=self.runtime,
            direction="outbound",
            stack=listener_stack("outbound", self.mesh.outbound.router, unknown, self.runtime,
                                 self.tap),
            tcp=self.metrics.tcp("outbound", "src"),
            malformed=unknown,
            head_timeout=head_timeout,
            idle_timeout=self.config.mesh.defaults.timeouts.idle,
        )

    # -- the client side --

    def client(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> FakeTransport:
        """A client connection accepted by the outbound listener."""
        transport = FakeTransport(self.loop, peer=peer)
        transport.attach(ClientConnection(self.ctx))
        self.loop.run_ready()
        return transport

    # -- the endpoints' side --

    def connect(self, address: str | None = None) -> PendingConnect:
        """The oldest connection the proxy is making (to ``address``), not yet complete."""
        return self.loop.take_connect(address)

    def accept(self, address: str | None = None) -> FakeTransport:
        """Complete the oldest pending connect: the endpoint's end of the connection."""
        return self.connect(address).accept()

    @property
    def connecting(self) -> list[str]:
        return [pending.address for pending in self.loop.connects if not pending.future.done()]

    # -- time and the proxy's own state --

    def advance(self, seconds: float) -> None:
        self.loop.advance(seconds)

    def endpoint(self, address: str, service: str = "web.default") -> Endpoint:
        target = self.mesh.outbound.targets[service]
        return next(e for e in target.endpoints if e.address == address)

    def responses(self, service: str = "web", endpoint: str = "") -> dict[tuple, int]:
        """Responses by (status, error), and (status, error, grpc-status) for gRPC ones."""
        stats = self.metrics.responses("outbound", service, "default", endpoint).responses
        return {(s, e) if g < 0 else (s, e, g): n for (s, e, g), n in stats.items()}
