"""The layers of the request path, one concern each (assembled in `tulle.proxy.outbound`
and `tulle.proxy.inbound`).

A layer is called with the request on the way in (``call``) and calls the next one. To act on
the way back — the outcome of an attempt, the response head, the end — it registers
itself on the exchange or the attempt as it passes, and is called back (the callback
form of tower's ``Service::call`` returning a future the layer wraps). Layers above
`Balance` see the `Exchange` (the whole request, all its tries); layers below it see
one `Attempt` (one try on one endpoint).

The two kinds are traits (mypy_extensions): the compiled layers call the next one through
mypyc's trait table, not as a Python callable (each hop cost a generic call and an
argument parse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy_extensions import trait

if TYPE_CHECKING:
    from tulle.proxy.attempt import Attempt
    from tulle.proxy.exchange import Exchange


@trait
class ExchangeLayer:
    """A layer that sees the whole request (above `Balance`)."""

    __slots__ = ()

    def call(self, exchange: Exchange) -> None:
        """Take ``exchange`` on its way in (and pass it on, or answer it)."""
        raise NotImplementedError


@trait
class AttemptLayer:
    """A layer that sees one try on one endpoint (below `Balance`)."""

    __slots__ = ()

    def call(self, attempt: Attempt) -> None:
        """Take ``attempt`` on its way in (and pass it on, or end it)."""
        raise NotImplementedError
