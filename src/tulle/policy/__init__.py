"""Inbound policy: who may call this proxy's workload (authorization) and how often
(local rate limits).

The policy objects of a configuration (``policy.tulle.dev``: Server,
AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication,
HTTPLocalRateLimitPolicy, and HTTPRoutes attached to Servers) are compiled once per
configuration for the proxy's workload (`compile`) into per-port decisions that cost
a few dict lookups and integer operations per request (`authorize`) and integer GCRA
buckets (`rate_limit`). The request path reaches them through the inbound stack's
``authorize`` and ``rate limit`` layers (`tulle.proxy.inbound`).
"""
