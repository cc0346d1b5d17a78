"""The clock balancers read time from: seconds, monotonic, injected by the proxy.

The proxy passes ``loop.time``; tests pass a fake clock they advance by hand, so
EWMA decay and slow start are tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
