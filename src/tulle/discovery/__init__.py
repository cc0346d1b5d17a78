"""Discovery sources: where services, endpoints and policy come from.

Every source implements `ConfigSource` and hands the proxy whole `Config`
snapshots. `ManifestSource` reads manifests on disk (the embedded default);
`DnsSource` wraps another source and fills in the endpoints of services whose
``spec.dns`` names a DNS lookup, re-resolving each on its TTL.
"""

from tulle.discovery.dns_source import DnsSource
from tulle.discovery.manifests import ManifestWatcher
from tulle.discovery.source import ConfigSource, ManifestSource, OnConfig, OnError

__all__ = ["ConfigSource", "DnsSource", "ManifestSource", "ManifestWatcher", "OnConfig", "OnError"]
