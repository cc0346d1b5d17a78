"""What every part of a running proxy shares: the event loop, the clock, the timer wheel.

Made once per process (per worker) and handed to what needs time, so that tests run
the whole proxy on a fake loop whose clock moves only when they say (STYLE.md, "pass the
loop and the clock in").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from tulle.transport.timers import TimerWheel


@dataclass(frozen=True, slots=True)
class Runtime:
    loop: asyncio.AbstractEventLoop
    # Measures latencies. Not loop.time(): uvloop's loop clock has millisecond
    # resolution and is read once per loop iteration.
    clock: Callable[[], float]
    wheel: TimerWheel

    @classmethod
    def on(cls, loop: asyncio.AbstractEventLoop,
           clock: Callable[[], float] = time.monotonic) -> Runtime:
        return cls(loop, clock, TimerWheel(loop, clock))
