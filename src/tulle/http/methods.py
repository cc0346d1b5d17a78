"""The HTTP methods (RFC 9110 §9), and which of them are idempotent (§9.2.2)."""

from __future__ import annotations

from typing import Final

HTTP_METHODS: Final[tuple[str, ...]] = (
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
)
# Repeating one of these has the effect of sending it once: retried by default.
IDEMPOTENT_METHODS: Final[tuple[str, ...]] = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
