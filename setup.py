"""Build hook: compile the data plane's hot modules with mypyc when asked.

Everything about the package is in pyproject.toml; this file only adds the compiled
modules. With ``TULLE_COMPILE=1`` the modules below — the ones every request goes
through — are compiled to C extensions by mypyc (from their type annotations); the
``.py`` files ship beside them and are the fallback wherever no extension was built.
Without it (the default, and what an editable install for development gets, so that
an edited module is never shadowed by a stale extension) the package is pure Python.
See docs/architecture.md, "Speed".
"""

from __future__ import annotations

import os

from setuptools import setup

# Every module a request passes through, in dependency order (see docs/architecture.md).
HOT_MODULES = [
    "src/tulle/http/message.py",
    "src/tulle/http/headers.py",
    "src/tulle/http/h1/parser.py",
    "src/tulle/http/h1/writer.py",
    "src/tulle/http/h2/heads.py",
    "src/tulle/http/h2/codec.py",
    "src/tulle/grpc/status.py",
    "src/tulle/transport/timers.py",
    "src/tulle/transport/tls_stream.py",
    "src/tulle/telemetry/metrics.py",
    "src/tulle/balance/base.py",
    "src/tulle/balance/clock.py",
    "src/tulle/balance/expected_latency.py",
    "src/tulle/balance/latency_estimate.py",
    "src/tulle/balance/least_request.py",
    "src/tulle/balance/least_response_time.py",
    "src/tulle/balance/peak_ewma.py",
    "src/tulle/balance/response_estimate.py",
    "src/tulle/balance/ring_hash.py",
    "src/tulle/balance/round_robin.py",
    "src/tulle/balance/slow_start.py",
    "src/tulle/balance/weighted_random.py",
    "src/tulle/balance/weighted_round_robin.py",
    "src/tulle/balance/zone_aware.py",
    "src/tulle/policy/rate_limit.py",
    "src/tulle/policy/authorize.py",
    "src/tulle/resilience/breaker.py",
    "src/tulle/resilience/budget.py",
    "src/tulle/resilience/retry.py",
    "src/tulle/proxy/streams.py",
    "src/tulle/proxy/transitions.py",
    "src/tulle/proxy/errors.py",
    "src/tulle/proxy/exchange.py",
    "src/tulle/proxy/attempt.py",
    "src/tulle/proxy/targets.py",
    "src/tulle/proxy/routing.py",
    "src/tulle/proxy/layers/__init__.py",
    "src/tulle/proxy/layers/observe.py",
    "src/tulle/proxy/layers/loop_guard.py",
    "src/tulle/proxy/layers/route.py",
    "src/tulle/proxy/layers/timeout.py",
    "src/tulle/proxy/layers/retry.py",
    "src/tulle/proxy/layers/balance.py",
    "src/tulle/proxy/layers/feedback.py",
    "src/tulle/proxy/layers/forward.py",
    "src/tulle/tcp/splice.py",
    "src/tulle/transport/detect.py",
    "src/tulle/proxy/layers/authorize.py",
    "src/tulle/proxy/layers/rate_limit.py",
    "src/tulle/proxy/layers/client_stats.py",
    "src/tulle/downstream/listener.py",
    "src/tulle/downstream/h2.py",
    "src/tulle/downstream/h1.py",
    "src/tulle/downstream/detect.py",
    "src/tulle/upstream/h1.py",
    "src/tulle/upstream/h2.py",
    "src/tulle/upstream/pool.py",
]


def _extensions() -> list:
    if os.environ.get("TULLE_COMPILE") != "1":
        return []
    from mypyc.build import mypycify

    return mypycify(HOT_MODULES, opt_level="3", debug_level="1")


setup(ext_modules=_extensions())
