"""Discovery sources: where services and endpoints come from (manifests on disk today)."""

from tulle.discovery.manifests import ManifestWatcher

__all__ = ["ManifestWatcher"]
