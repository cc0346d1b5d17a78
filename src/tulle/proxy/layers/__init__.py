"""The layers of the request path, one concern each (assembled in `tulle.proxy.outbound`
and `tulle.proxy.inbound`).

A layer is called with the request on the way in and calls the next one. To act on
the way back — the outcome of an attempt, the response head, the end — it registers
itself on the exchange or the attempt as it passes, and is called back (the callback
form of tower's ``Service::call`` returning a future the layer wraps). Layers above
`Balance` see the `Exchange` (the whole request, all its tries); layers below it see
one `Attempt` (one try on one endpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tulle.proxy.attempt import Attempt
    from tulle.proxy.exchange import Exchange

ExchangeLayer = Callable[["Exchange"], None]
AttemptLayer = Callable[["Attempt"], None]
