"""Per-request records of a fixed-rate run cut into time buckets and phases, and plotted.

The records are :mod:`bench.fixed_rate`'s CSV rows. A request belongs to the bucket
(or phase) in which it was *due* (its scheduled send offset), whenever it ended,
so a request held for 3 s by a proxy shows where the client felt it: in the
second it was sent. Conventions, shared with the failover report:

- a request **failed** if it has an error (refused, reset, timeout, client) or a
  status outside 2xx; everything else succeeded;
- latency percentiles are over the **successful** requests only (nearest rank,
  :func:`bench.stats.percentile`), and failures are counted beside them: a proxy
  that answers fast 502s must not look fast. A bucket without a success has no p99;
- the time an endpoint **gets traffic again** is the moment the first successful
  response from it (by the ``X-Bench-Backend`` header) reached the client after
  a given offset.

Pure functions on lists of :class:`Record`, tested on canned data; the plot
(matplotlib :class:`~matplotlib.figure.Figure`, Agg) is the one impure part.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.stats import percentile


@dataclass(frozen=True)
class Record:
    """One request of a fixed-rate run (times in seconds after the run's start)."""

    offset: float  # when it was due
    latency: float  # from ``offset`` to the end of the response or the failure
    status: int  # 0: no response
    error: str = ""  # "", refused, reset, timeout, client
    backend: str = ""  # who answered, from X-Bench-Backend

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status < 300

    @property
    def done(self) -> float:
        """When the response (or the failure) reached the client."""
        return self.offset + self.latency

    @property
    def failure(self) -> str:
        """What went wrong, for counting: the error, else ``HTTP <status>``; "" if ok."""
        if self.ok:
            return ""
        return self.error or f"HTTP {self.status}"


def parse_records(text: str) -> list[Record]:
    """Records from :mod:`bench.fixed_rate`'s CSV text."""
    reader = csv.DictReader(io.StringIO(text))
    return [
        Record(
            offset=float(row["offset"]),
            latency=float(row["latency"]),
            status=int(row["status"] or 0),
            error=row.get("error") or "",
            backend=row.get("backend") or "",
        )
        for row in reader
    ]


def read_records(path: Path) -> list[Record]:
    return parse_records(path.read_text())


@dataclass(frozen=True)
class Summary:
    """Requests, failures and successful-request latency of a span of the run."""

    start: float
    end: float
    requests: int
    failures: int
    p50: float | None  # seconds; None when nothing succeeded
    p99: float | None
    maximum: float | None
    failure_kinds: Mapping[str, int]

    @property
    def failure_percent(self) -> float:
        return 100.0 * self.failures / self.requests if self.requests else 0.0


def summarize(records: Iterable[Record], start: float, end: float) -> Summary:
    """The requests due in ``[start, end)``."""
    inside = [r for r in records if start <= r.offset < end]
    latencies = sorted(r.latency for r in inside if r.ok)
    kinds: dict[str, int] = {}
    for r in inside:
        if not r.ok:
            kinds[r.failure] = kinds.get(r.failure, 0) + 1
    return Summary(
        start=start,
        end=end,
        requests=len(inside),
        failures=sum(kinds.values()),
        p50=percentile(latencies, 50) if latencies else None,
        p99=percentile(latencies, 99) if latencies else None,
        maximum=latencies[-1] if latencies else None,
        failure_kinds=kinds,
    )


def buckets(records: Sequence[Record], seconds: float, width: float = 1.0) -> list[Summary]:
    """One :class:`Summary` per ``width`` seconds from 0 to ``seconds``.

    The last bucket is shorter when ``seconds`` is not a multiple of ``width``.
    """
    if width <= 0:
        raise ValueError(f"bucket width must be positive, got {width}")
    count = math.ceil(round(seconds / width, 9))
    # One pass to group, instead of scanning every record per bucket.
    grouped: list[list[Record]] = [[] for _ in range(count)]
    for r in records:
        index = math.floor(r.offset / width)
        if 0 <= index < count and r.offset < seconds:
            grouped[index].append(r)
    return [
        summarize(group, i * width, min((i + 1) * width, seconds))
        for i, group in enumerate(grouped)
    ]


def first_answer_from(records: Iterable[Record], backend: str, after: float) -> float | None:
    """When the first successful response from ``backend`` completed after ``after``."""
    times = [r.done for r in records if r.ok and r.backend == backend and r.done > after]
    return min(times) if times else None


def share_per_bucket(
    records: Sequence[Record], backend: str, seconds: float, width: float = 1.0
) -> list[int]:
    """Successful responses from ``backend`` per bucket (by due time)."""
    count = math.ceil(round(seconds / width, 9))
    served = [0] * count
    for r in records:
        index = math.floor(r.offset / width)
        if r.ok and r.backend == backend and 0 <= index < count:
            served[index] += 1
    return served


@dataclass(frozen=True)
class Timeline:
    """What one peer's panel of the plot shows."""

    name: str
    buckets: Sequence[Summary]
    served_by_killed: Sequence[int]  # per bucket


def plot(
    path: Path,
    title: str,
    timelines: Sequence[Timeline],
    events: Mapping[str, float],
    width: float = 1.0,
) -> Path:
    """One panel per peer: p99 per bucket (log scale), failed requests and the
    requests the killed endpoint served per bucket, vertical lines at ``events``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    fig = Figure(figsize=(10, 2.6 * len(timelines) + 0.6))
    axes = fig.subplots(len(timelines), 1, squeeze=False, sharex=True)[:, 0]
    for ax, timeline in zip(axes, timelines, strict=True):
        mids = [b.start + (b.end - b.start) / 2 for b in timeline.buckets]
        p99 = [b.p99 * 1000 if b.p99 is not None else math.nan for b in timeline.buckets]
        ax.plot(mids, p99, marker="o", markersize=3, color="#4c72b0", label="p99 (ms, left)")
        ax.set_yscale("log")
        # Plain numbers; minor ticks labelled only when the panel spans little.
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(1, 0.5)))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_ylabel("p99 of successes (ms)")
        ax.set_title(timeline.name, loc="left", fontsize=10)
        for label, at in events.items():
            ax.axvline(at, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(
                label,
                (at, 1),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                ha="left",
                va="top",
                xytext=(2, -2),
                textcoords="offset points",
            )
        counts = ax.twinx()
        starts = [b.start for b in timeline.buckets]
        failures = [b.failures for b in timeline.buckets]
        counts.bar(
            starts,
            failures,
            width=width * 0.9,
            align="edge",
            color="#c44e52",
            alpha=0.7,
            label="failed requests (right)",
        )
        counts.step(
            [*starts, timeline.buckets[-1].end] if starts else [],
            [*timeline.served_by_killed, timeline.served_by_killed[-1]] if starts else [],
            where="post",
            color="#55a868",
            linewidth=1.2,
            label="answered by the killed endpoint (right)",
        )
        counts.set_ylabel("requests per bucket")
        counts.set_ylim(bottom=0)
    handles, labels = axes[0].get_legend_handles_labels()
    more_handles, more_labels = fig.axes[-1].get_legend_handles_labels()
    fig.legend(
        handles + more_handles,
        labels + more_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.965),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    axes[-1].set_xlabel(f"seconds since the start of the load ({width:g} s buckets, by due time)")
    fig.suptitle(title, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    return path
