"""Opaque TCP: a connection balanced once, when it opens, then spliced to its endpoint.

``proxy`` decides where a connection that is not HTTP goes (per listener); ``session``
picks the endpoint with the service's balancer and connects under the failover parts
that apply to a connection; ``splice`` joins the two connections with flow control both
ways — and is also what a WebSocket or CONNECT tunnel becomes once its HTTP exchange has
switched protocols. Opaque TCP bypasses the request core (`tulle.proxy`'s exchange and
layers): it shares only the balancers, the endpoint pools and the transport helpers.
"""

from tulle.tcp.proxy import TcpProxy
from tulle.tcp.session import TcpSession
from tulle.tcp.splice import Splice

__all__ = ["Splice", "TcpProxy", "TcpSession"]
