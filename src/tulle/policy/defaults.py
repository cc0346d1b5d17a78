"""The names of the default inbound policies: Linkerd's ``proxy.defaultInboundPolicy``
values, plus ``audit``.

Apart from the schema (`tulle.config.schema_authorization`, which validates them) so
that ``tulle proxy --help`` and the workers' supervisor can offer them without loading
pydantic.
"""

from __future__ import annotations

DEFAULT_POLICIES: tuple[str, ...] = (
    "all-unauthenticated", "all-authenticated", "cluster-unauthenticated",
    "cluster-authenticated", "deny", "audit",
)
