"""Failover: retries and their budget, circuit breakers, outlier detection, health checks.

Each piece is small and driven by an injected clock or scheduler; the proxy
(`tulle.proxy`) feeds them results and reads one flag per endpoint — whether
the balancer may pick it — so the slow decisions stay off the request path.
"""

from tulle.resilience.breaker import CLOSED, OPEN, PROBING, CircuitBreaker
from tulle.resilience.budget import RetryBudget
from tulle.resilience.health import HealthChecker, HealthState, ProbeSpec
from tulle.resilience.outlier import OutlierRules, Sample, ejection_cap, select_outliers
from tulle.resilience.retry import MAX_REPLAY_BODY, RetryPolicy, backoff

__all__ = [
    "CLOSED",
    "MAX_REPLAY_BODY",
    "OPEN",
    "PROBING",
    "CircuitBreaker",
    "HealthChecker",
    "HealthState",
    "OutlierRules",
    "ProbeSpec",
    "RetryBudget",
    "RetryPolicy",
    "Sample",
    "backoff",
    "ejection_cap",
    "select_outliers",
]
