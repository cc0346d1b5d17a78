"""The control-plane scaling plot: propagation and CPU per change against subscribers.

Built on :class:`matplotlib.figure.Figure` (Agg), like ``bench/plots.py``. Both axes
are logarithmic in N, so linear growth shows as a slope of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure


def scaling(
    path: Path,
    title: str,
    subscribers: Sequence[int],
    p99_ms: Sequence[float],
    p50_ms: Sequence[float],
    cpu_ms_per_change: Sequence[float],
) -> Path:
    """Save two panels: propagation p50/p99 vs N, and control-plane CPU/change vs N."""
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2)
    left.plot(subscribers, p99_ms, "o-", label="p99")
    left.plot(subscribers, p50_ms, "s--", label="p50")
    left.set_title("update propagation")
    left.set_ylabel("ms (log scale)")
    right.plot(subscribers, cpu_ms_per_change, "o-", color="#c44e52")
    right.set_title("control-plane CPU per change")
    right.set_ylabel("CPU ms per change (log scale)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscribed proxies (N, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    left.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
