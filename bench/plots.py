"""Plots for the result files (matplotlib, Agg backend: no display needed).

Figures are built with :class:`matplotlib.figure.Figure` directly rather than
through pyplot, so no global backend or figure state is touched and PNGs are
rendered by Agg.

A bar chart of throughput and, per request rate, grouped bars of latency
percentiles on a log scale, one group per peer, so that "how much slower than
direct" is visible at a glance for the median and the tail alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bench.stats import LatencySummary


def throughput_and_latency(
    path: Path,
    title: str,
    throughput: Mapping[str, float],
    latency: Mapping[int, Mapping[str, LatencySummary]],
    reference: str = "haproxy",
) -> Path:
    """Save one figure: requests/s per peer, then latency percentiles per rate."""
    peers: Sequence[str] = list(throughput)
    fig = Figure(figsize=(5 + 4.5 * len(latency), 4.2))
    axes = fig.subplots(1, 1 + len(latency), squeeze=False)[0]

    ax = axes[0]
    values = [throughput[p] for p in peers]
    bars = ax.bar(peers, values, color="#4c72b0")
    base = throughput.get(reference)
    for bar, value in zip(bars, values, strict=True):
        label = f"{value:,.0f}" + (f"\n×{value / base:.2f}" if base else "")
        ax.annotate(
            label, (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8
        )
    ax.set_title("throughput (wrk, median)")
    ax.set_ylabel("requests/s")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.margins(y=0.2)

    labels = (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"))
    width = 0.8 / len(labels)
    for ax, (rate, summaries) in zip(axes[1:], latency.items(), strict=True):
        names = [p for p in peers if p in summaries]
        for offset, (label, attribute) in enumerate(labels):
            xs = [i + (offset - 1) * width for i in range(len(names))]
            ys = [getattr(summaries[p], attribute) * 1000 for p in names]
            ax.bar(xs, ys, width, label=label)
        ax.set_xticks(range(len(names)), names)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title(f"latency at {rate:,} requests/s (hey)")
        ax.legend(fontsize=8)

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
