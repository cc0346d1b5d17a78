"""The web dashboard: live golden signals, endpoint state and tap, for a browser.

``tulle dashboard`` serves a static page (HTML, JS and CSS shipped in this
package: no CDN, works offline) and a small JSON API over the same admin
addresses the CLI reads. `Sampler` scrapes the proxies once a second and keeps
a short history (for the sparklines); `serve_dashboard` answers the page, the
API and a live tap stream, on plain asyncio.
"""

from tulle.dashboard.sampler import Sampler
from tulle.dashboard.server import serve_dashboard

__all__ = ["Sampler", "serve_dashboard"]
