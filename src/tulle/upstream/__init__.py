"""The upstream side: connections to endpoints, lent one request at a time.

``pool`` makes and keeps connections per address (with reachability backoff) and lends
them to whatever asks (`tulle.proxy.streams.LeaseWaiter`); ``h1`` is one HTTP/1.1
connection carrying one request at a time. A pool never sees an exchange.
"""

from tulle.upstream.pool import ConnectFailure, EndpointPool

__all__ = ["ConnectFailure", "EndpointPool"]
