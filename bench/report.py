"""The result file of a scenario: tables, the machine, the tools, and how to rerun.

A :class:`Report` is what a scenario returns: plain tables of already formatted
cells plus notes. :func:`write_report` adds what makes a number meaningful later —
the machine (CPU count and model, kernel), the date, the commit, the tool versions,
the CPU pinning and the exact command to rerun — and writes
``<results_dir>/<scenario>.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.tools import tool_version


@dataclass
class Table:
    """One markdown table; cells are already formatted strings."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def column(self, name: str) -> dict[str, str]:
        """The cells of column ``name``, keyed by each row's first cell."""
        index = self.columns.index(name)
        return {row[0]: row[index] for row in self.rows}

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append(
            "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(self.columns))) + "|"
        )
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"


@dataclass
class Report:
    """What a scenario measured, ready to be written out."""

    scenario: str
    title: str
    description: str  # what the scenario measures, one paragraph
    tables: list[Table] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # file names in the results dir
    notes: list[str] = field(default_factory=list)

    def table(self, title_prefix: str) -> Table:
        """The first table whose title starts with ``title_prefix``."""
        for table in self.tables:
            if table.title.startswith(title_prefix):
                return table
        raise KeyError(title_prefix)


@dataclass(frozen=True)
class RunContext:
    """How the run was made: everything needed to judge or repeat it."""

    command: str
    pinning: str
    tools: Sequence[str]
    quick: bool
    load_before: float  # 1-minute load average when the run started: how busy the box was


def machine() -> dict[str, str]:
    """CPU count and model, kernel and Python of this machine."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "CPUs (nproc)": str(len(os.sched_getaffinity(0))),
        "CPU model": model,
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
    }


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True, timeout=10, check=False,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.decode().strip() or "unknown"


def render(report: Report, context: RunContext, now: dt.datetime | None = None) -> str:
    """The markdown text of ``report``."""
    now = now or dt.datetime.now(dt.UTC)
    parts = [f"# {report.title}", "", report.description, ""]
    if context.quick:
        parts += ["**Quick mode**: short runs, one round. A smoke test, not a result.", ""]
    for table in report.tables:
        parts += [table.to_markdown()]
    parts += [f"![{report.scenario}]({image})\n" for image in report.images]
    if report.notes:
        parts += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    parts += ["## How this was measured", ""]
    setup = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        **machine(),
        "load average (1 min) before / after": (
            f"{context.load_before:.2f} / {os.getloadavg()[0]:.2f}"
        ),
        "CPU pinning": context.pinning,
        "rerun with": f"`{context.command}`",
    }
    parts += [f"- **{key}**: {value}" for key, value in setup.items()]
    parts += ["", "Tools:", ""] + [f"- {name}: `{tool_version(name)}`" for name in context.tools]
    return "\n".join(parts) + "\n"


def write_report(report: Report, context: RunContext, results_dir: Path) -> Path:
    """Write ``<results_dir>/<scenario>.md`` and return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{report.scenario}.md"
    path.write_text(render(report, context))
    return path
