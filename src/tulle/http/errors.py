"""Protocol errors, split by whose fault they are (the h11 convention).

A `RemoteProtocolError` means the peer sent bytes we cannot accept: from a
client that is a 4xx answer and a closed connection; from an upstream it is a
502. A `LocalProtocolError` means our own code tried to send something HTTP does
not allow, which is a bug in Tulle.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of the HTTP errors raised by the codecs."""


class RemoteProtocolError(ProtocolError):
    """The peer broke HTTP/1.1. ``status`` is what a server answers to it."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class LocalProtocolError(ProtocolError):
    """We were about to send something HTTP/1.1 does not allow."""
