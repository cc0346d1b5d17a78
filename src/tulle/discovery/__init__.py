"""Discovery sources: where services, endpoints and policy come from.

Every source implements `ConfigSource` and hands the proxy whole `Config`
snapshots. `ManifestSource` reads manifests on disk (the embedded default).
"""

from tulle.discovery.manifests import ManifestWatcher
from tulle.discovery.source import ConfigSource, ManifestSource, OnConfig, OnError

__all__ = ["ConfigSource", "ManifestSource", "ManifestWatcher", "OnConfig", "OnError"]
