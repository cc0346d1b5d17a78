"""``python -m bench [SCENARIO ...] [--quick]``: run benchmark scenarios, write results.

With no scenario named, every scenario in :data:`bench.scenarios.SCENARIOS` runs.
Results go to ``bench/results/<scenario>.md`` (and a PNG) unless ``--results-dir``
says otherwise. Exit status: 0 done, 1 a run failed, 2 bad usage or a missing tool.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.harness import open_harness
from bench.load import LoadFailed
from bench.peers import PEER_NAMES, PeerFailed
from bench.report import Report, RunContext, write_report
from bench.scenarios import SCENARIOS, load_scenario
from bench.tools import find_tool, missing_tools

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Tools whose versions every result file records, beyond those a scenario needs.
PEER_TOOLS = {"haproxy": "haproxy", "nginx": "nginx", "tulle": "tulle"}


def run_scenario(
    name: str,
    quick: bool,
    results_dir: Path,
    peer_names: Sequence[str] = PEER_NAMES,
    pin: bool = True,
    command: str = "make bench",
) -> tuple[Report, Path]:
    """Run one scenario and write its report; returns the report and the file written."""
    scenario = load_scenario(name)
    needed = [tool for tool in scenario.TOOLS if tool not in PEER_TOOLS or tool in peer_names]
    # The backends are nginx whichever peers run.
    needed = sorted(set(needed) | {"nginx"})
    missing = missing_tools(needed)
    if missing:
        find_tool(missing[0])  # raises ToolMissing with a hint
    load_before = os.getloadavg()[0]
    with open_harness(results_dir, pin=pin, peer_names=peer_names) as harness:
        harness.log(f"{name}: {harness.pinning.describe()}")
        report = scenario.run(harness, quick)
        context = RunContext(
            command=command,
            pinning=harness.pinning.describe(),
            tools=needed,
            quick=quick,
            load_before=load_before,
        )
        return report, write_report(report, context, results_dir)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"scenarios to run (default: all of {', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about a second per measurement and one round: a smoke test",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS_DIR,
        help="where to write <scenario>.md and plots (default: bench/results)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEER_NAMES),
        help=f"comma-separated peers to run (default: {','.join(PEER_NAMES)})",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the proxy and the load generator to separate CPUs",
    )
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    return parser


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into an exception so every `finally` runs and children are stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.list:
        for name in SCENARIOS:
            print(f"{name:12} {load_scenario(name).DESCRIPTION}")
        return 0
    names = args.scenarios or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    peer_names = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad_peers = [p for p in peer_names if p not in PEER_NAMES]
    if unknown or bad_peers or not peer_names:
        what = unknown and f"unknown scenario(s) {', '.join(unknown)}; known: " + ", ".join(
            SCENARIOS
        )
        what = what or f"unknown peer(s) {', '.join(bad_peers)}; known: {', '.join(PEER_NAMES)}"
        print(f"bench: error: {what}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must reach us even if started from a shell that ignores SIGINT in
    # background jobs; KeyboardInterrupt then unwinds and stops every child.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = shlex.join([".venv/bin/python", "-m", "bench", *(argv or sys.argv[1:])])
    status = 0
    for name in names:
        try:
            _, path = run_scenario(
                name, args.quick, args.results_dir, peer_names, not args.no_pin, command
            )
        except (PeerFailed, LoadFailed) as exc:
            print(f"bench: {name} failed: {exc}", file=sys.stderr)
            status = 1
            continue
        except RuntimeError as exc:  # ToolMissing and friends
            print(f"bench: {name} cannot run: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("bench: interrupted; every process it started is stopped", file=sys.stderr)
            return 130
        print(f"bench: {name}: wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
