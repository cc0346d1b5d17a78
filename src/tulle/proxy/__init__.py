"""The data plane's core: one request (`exchange`), its tries (`attempt`), the layers of
its path (`layers`, assembled in `outbound` and `inbound`), and a running proxy
(`server`).

`ProxyServer` and `ProxyOptions` are the public entry points; `server` is the only
module that needs every part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tulle.proxy.server import ProxyOptions, ProxyServer


def __getattr__(name: str) -> Any:
    # Lazily, so that importing one part (the codec's users, the errors table) does not
    # import the whole proxy, and the sides can import the core without a cycle.
    if name in ("ProxyOptions", "ProxyServer"):
        from tulle.proxy import server

        return getattr(server, name)
    raise AttributeError(name)


__all__ = ["ProxyOptions", "ProxyServer"]
