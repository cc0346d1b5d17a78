"""Records the commands of docs/kubernetes.md's walk-through and their real output.

The meshed-pod test follows the same steps as the docs. With
``TULLE_WALKTHROUGH=FILE`` set, each step's command and output are appended to FILE,
which is where the outputs shown in docs/kubernetes.md come from.
"""

from __future__ import annotations

import os
from pathlib import Path


def record(command: str, output: str) -> None:
    target = os.environ.get("TULLE_WALKTHROUGH")
    if target:
        with Path(target).open("a") as file:
            file.write(f"$ {command}\n{output.rstrip()}\n\n")
