"""Drive load with wrk (throughput) and hey (latency at a fixed rate), and parse them.

- **wrk** is closed-loop: ``-c`` connections each send the next request as soon as
  the last one is answered, so requests/s is the most the path can serve.
- **hey** with ``-q`` (per-worker rate) and ``-c`` workers sends about ``q × c``
  requests/s, each worker on a ticker ("open loop-ish": a worker whose request
  outlives its tick sends late, so overload shows up partly as lower achieved rate).
  ``-o csv`` prints one line per successful request; percentiles are computed in
  :mod:`bench.stats`, not taken from hey's summary.

Two quirks of hey's CSV, both handled here: it prints seconds with four decimals, so
latencies are quantised to 0.1 ms; and it leaves failed requests out entirely (they
only show up in the summary it does not print), so the achieved rate and the error
count are derived by comparing rows to what was asked for.

Parsing is split from running so it can be tested on canned output.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from bench.peers import SERVICE_HOST
from bench.processes import ProcessGroup
from bench.tools import find_tool

# Extra time a load tool may take beyond its nominal duration before it is killed.
RUN_SLACK_SECONDS = 30.0

# Per-worker rate for hey. 100/s per worker (a 10 ms tick) keeps a worker's
# schedule intact as long as its requests take under 10 ms; the total rate is
# reached by adding workers (1,000/s = 10 workers, 5,000/s = 50 workers).
HEY_RATE_PER_WORKER = 100


class LoadFailed(RuntimeError):
    """A load tool failed or produced output that cannot be parsed."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    non_2xx: int
    socket_errors: int


@dataclass(frozen=True)
class HeyResult:
    latencies: list[float]  # seconds, one per successful request
    statuses: dict[int, int]  # status code -> count
    seconds: float  # the duration asked for

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)

    @property
    def achieved_rate(self) -> float:
        return self.requests / self.seconds


_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's default (non ``--latency``) report."""
    done = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", text, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.MULTILINE)
    if done is None or rate is None:
        raise LoadFailed(f"cannot parse wrk output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        requests=int(done.group(1)),
        seconds=float(done.group(2)) * _UNIT_SECONDS[done.group(3)],
        requests_per_second=float(rate.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def parse_hey_csv(text: str, seconds: float) -> HeyResult:
    """Parse ``hey -o csv``: one row per request, response time in seconds first."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0] != "response-time" or "status-code" not in header:
        raise LoadFailed(f"cannot parse hey CSV output (header {header!r})")
    status_column = header.index("status-code")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for row in reader:
        if not row:
            continue
        try:
            latencies.append(float(row[0]))
            code = int(row[status_column])
        except (ValueError, IndexError) as exc:
            raise LoadFailed(f"cannot parse hey CSV row {row!r}") from exc
        statuses[code] = statuses.get(code, 0) + 1
    return HeyResult(latencies=latencies, statuses=statuses, seconds=seconds)


def run_wrk(
    group: ProcessGroup,
    url: str,
    seconds: int,
    connections: int,
    cpus: frozenset[int] | None,
) -> WrkResult:
    """``wrk -t1 -c<connections> -d<seconds>s`` against ``url`` with ``Host: bench``."""
    argv = [
        find_tool("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s",
        "-H", f"Host: {SERVICE_HOST}", url,
    ]  # fmt: skip
    done = group.run(argv, cpus, timeout=seconds + RUN_SLACK_SECONDS)
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise LoadFailed(f"wrk exited with {done.returncode}: {done.stderr.decode()}{out}")
    return parse_wrk(out)


def run_hey(
    group: ProcessGroup,
    url: str,
    seconds: float,
    rate: int,
    cpus: frozenset[int] | None,
    workers: int | None = None,
) -> HeyResult:
    """About ``rate`` requests/s for ``seconds`` against ``url``, one CSV row each;
    ``workers`` concurrent connections (default: one per ``HEY_RATE_PER_WORKER``)."""
    if workers is None:
        workers = max(1, round(rate / HEY_RATE_PER_WORKER))
    per_worker = rate / workers
    argv = [
        find_tool("hey"), "-z", f"{int(seconds * 1000)}ms", "-q", f"{per_worker:g}",
        "-c", str(workers), "-host", SERVICE_HOST, "-o", "csv", url,
    ]  # fmt: skip
    done = group.run(argv, cpus, timeout=seconds + RUN_SLACK_SECONDS)
    if done.returncode != 0:
        raise LoadFailed(f"hey exited with {done.returncode}: {done.stderr.decode()}")
    result = parse_hey_csv(done.stdout.decode(errors="replace"), seconds)
    if not result.latencies:
        raise LoadFailed(f"hey got no successful response from {url}")
    return result
