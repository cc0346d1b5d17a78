"""raise_open_files_limit: the soft RLIMIT_NOFILE goes up to the hard one at start, and
the proxy says how many connections that leaves room for (issue 15, #4)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from tests.support.tools import skip_outside_ci
from tulle.transport.limits import RESERVED_FDS, FileLimit, connections_allowed

PROBE = (
    "import resource\n"
    "from tulle.transport.limits import raise_open_files_limit\n"
    "limit = raise_open_files_limit()\n"
    "print(limit.before, limit.after, *resource.getrlimit(resource.RLIMIT_NOFILE))\n"
)


# The child's hard limit, set by the test (lowering it needs no privilege), so that the
# tests do not depend on the limits of the machine that runs them.
HARD = 1024


def child_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < HARD:
        skip_outside_ci(f"needs a hard open-files limit of at least {HARD} (it is {hard})")
    return HARD


def run_with_soft_limit(soft: int) -> list[int]:
    hard = child_hard_limit()

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run([sys.executable, "-c", PROBE], preexec_fn=lower, check=True,
                         capture_output=True, timeout=30).stdout
    return [int(n) for n in out.split()]


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    hard = child_hard_limit()
    before, after, soft_now, hard_now = run_with_soft_limit(256)
    assert (before, after) == (256, hard)
    assert (soft_now, hard_now) == (hard, hard)


def test_a_soft_limit_already_at_the_hard_one_is_left_alone() -> None:
    hard = child_hard_limit()
    before, after, soft_now, _ = run_with_soft_limit(hard)
    assert before == after == soft_now == hard


@pytest.mark.parametrize(("limit", "connections"), [
    (1024, (1024 - RESERVED_FDS) // 2), (65536, (65536 - RESERVED_FDS) // 2), (10, 0),
])
def test_each_proxied_connection_counts_two_descriptors(limit: int, connections: int) -> None:
    assert connections_allowed(limit) == connections


def test_the_line_says_what_was_raised_and_what_it_allows() -> None:
    assert FileLimit(1024, 524288).describe() == (
        "open files limit 524288 (raised from 1024): room for about 262112 proxied "
        "connections (two descriptors each)"
    )
    assert "not raised" in FileLimit(4096, 4096).describe()
