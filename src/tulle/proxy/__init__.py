"""The data plane: listeners, per-connection protocols, and the request stack.

`ProxyServer` runs a proxy; `stack.build_stack` is the request path, layer by
layer; `exchange.Exchange` is one request and its response.
"""

from tulle.proxy.server import ProxyOptions, ProxyServer

__all__ = ["ProxyOptions", "ProxyServer"]
