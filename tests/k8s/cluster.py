"""A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver 1.20.2 and
kube-controller-manager, on free ports in a temp dir (see shared/KUBERNETES-TESTING.md).

No scheduler and no kubelet: Pods stay Pending until a test patches their status, and
the controller-manager's EndpointSlice controller then publishes them.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.proxy import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "kube-test-binaries.sh"
TOKEN = "tulle-test-admin-token"


def binaries(build: bool) -> Path | None:
    """The cached binaries' folder; build them first when ``build`` (else None if missing)."""
    if subprocess.run([str(BUILD_SCRIPT), "--check"], check=False).returncode == 0:
        out = subprocess.run([str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
        return Path(out.stdout.strip().splitlines()[-1])
    if not build:
        return None
    out = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True,
                         timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


class Cluster:
    """etcd + kube-apiserver + kube-controller-manager; ``start()``, ``stop()``."""

    def __init__(self, bin_dir: Path, work: Path) -> None:
        self.bin_dir = bin_dir
        self.work = work
        self.etcd_port = free_port()
        self.api_port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.kubeconfig = work / "kubeconfig"
        self.server = f"https://127.0.0.1:{self.api_port}"

    # -- processes --

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.processes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        log.close()

    def start(self) -> Cluster:
        work = self.work
        (work / "certs").mkdir(exist_ok=True)
        subprocess.run(["openssl", "genrsa", "-out", str(work / "sa.key"), "2048"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(work / "sa.key"), "-pubout",
                        "-out", str(work / "sa.pub")], check=True, capture_output=True)
        (work / "tokens.csv").write_text(f'{TOKEN},admin,admin-uid,"system:masters"\n')
        peer, metrics = free_port(), free_port()
        self._spawn("etcd", [
            "etcd", "--data-dir", str(work / "etcd"), "--name", "default",
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--listen-metrics-urls", f"http://127.0.0.1:{metrics}",
        ])
        self.start_apiserver()
        self.wait_ready()
        self._write_kubeconfig()
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--port=0",
            f"--service-account-private-key-file={work / 'sa.key'}",
            f"--root-ca-file={work / 'certs' / 'apiserver.crt'}",
            "--controllers=*,-nodelifecycle,-podgc", "--leader-elect=false",
        ])
        return self

    def start_apiserver(self) -> None:
        work = self.work
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}", "--insecure-port=0",
            f"--cert-dir={work / 'certs'}", f"--token-auth-file={work / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={work / 'sa.pub'}",
            f"--service-account-signing-key-file={work / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
        ])

    def restart_apiserver(self) -> None:
        self._terminate("kube-apiserver")
        self.start_apiserver()
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(f"{self.server}/readyz",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        while time.monotonic() < deadline:
            process = self.processes["kube-apiserver"]
            if process.poll() is not None:
                raise RuntimeError(f"kube-apiserver exited: {self.log('kube-apiserver')}")
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready in {timeout}s: {self.log('kube-apiserver')}")

    def _write_kubeconfig(self) -> None:
        ca = self.work / "certs" / "apiserver.crt"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": self.server, "certificate-authority": str(ca)}}],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }))

    def _terminate(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._terminate(name)

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
