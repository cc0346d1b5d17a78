#!/usr/bin/env bash
# Build (once) and cache the real kube-apiserver and kube-controller-manager v1.20.2
# that tests/k8s starts on loopback, from Debian bookworm's `kubernetes` source package
# (it carries its whole vendor tree, so GOPROXY=off builds with nothing fetched).
# See shared/KUBERNETES-TESTING.md. Idempotent: a cached build returns at once.
#
# Prints the cache directory on its last line of stdout. Also installs etcd-server,
# golang-go, rsync and jq when missing. Usage: scripts/kube-test-binaries.sh [--check]
#   --check   exit 0 if the binaries are cached, 1 if not; build nothing.
set -euo pipefail

VERSION=v1.20.2
DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE="${TULLE_K8S_CACHE:-$HOME/.cache/tulle/k8s-1.20.2}"
BINARIES=(kube-apiserver kube-controller-manager)
# Bumped when the way the binaries are built changes, so an older cache is rebuilt.
BUILD_ID="2: reflect2 1.0.2 from Debian"

cached() {
  for b in "${BINARIES[@]}"; do
    [ -x "$CACHE/$b" ] || return 1
  done
  [ "$(cat "$CACHE/BUILD_ID" 2>/dev/null)" = "$BUILD_ID" ]
}

if [ "${1:-}" = "--check" ]; then
  cached && exit 0 || exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

apt_install() {
  # apt_install command package [command package ...]: install each package whose command is missing
  local missing=()
  while [ $# -gt 0 ]; do
    if ! command -v "$1" >/dev/null 2>&1; then
      missing+=("$2")
    fi
    shift 2
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# etcd is needed to run the tests even when the Kubernetes binaries are cached.
apt_install etcd etcd-server

if cached; then
  echo "$CACHE"
  exit 0
fi

apt_install go golang-go rsync rsync jq jq make make dpkg-source dpkg-dev
# The vendored github.com/modern-go/reflect2 v1.0.1 crashes the API server under Go >= 1.18
# ("unexpected signal" in mapiterinit, as soon as a custom resource is encoded); v1.0.2
# fixes it, and Debian packages it: swap it into the vendor tree below.
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
if [ ! -f "$REFLECT2/reflect2.go" ]; then
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    golang-github-modern-go-reflect2-dev >&2
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tulle-k8s-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

# A private deb-src list made from the machine's own sources; the system's apt
# configuration is left untouched and no archive address is written here.
mkdir -p "$WORK/apt/sources.list.d" "$WORK/apt/lists/partial"
found_sources=0
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  sed -e 's/^Types:.*/Types: deb-src/' "$f" >"$WORK/apt/sources.list.d/$(basename "$f")"
  found_sources=1
done
if [ -f /etc/apt/sources.list ]; then
  sed -n -e 's/^deb /deb-src /p' /etc/apt/sources.list >"$WORK/apt/sources.list.d/legacy.list"
  found_sources=1
fi
[ "$found_sources" = 1 ] || { echo "no apt sources found" >&2; exit 1; }
APT_OPTS=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$WORK/apt/sources.list.d"
  -o "Dir::State::Lists=$WORK/apt/lists"
)
echo "fetching the kubernetes $DEB_VERSION source package" >&2
apt-get "${APT_OPTS[@]}" -qq update >&2
(cd "$WORK" && apt-get "${APT_OPTS[@]}" -qq source --download-only "kubernetes=$DEB_VERSION" >&2)

orig="$(ls "$WORK"/kubernetes_*.orig.tar.* | head -n 1)"
mkdir -p "$WORK/src"
tar -xf "$orig" -C "$WORK/src"
tree="$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)"

rm -rf "$tree/vendor/github.com/modern-go/reflect2"
mkdir -p "$tree/vendor/github.com/modern-go/reflect2"
cp "$REFLECT2"/*.go "$REFLECT2"/go.mod "$tree/vendor/github.com/modern-go/reflect2/" 2>/dev/null \
  || cp "$REFLECT2"/*.go "$tree/vendor/github.com/modern-go/reflect2/"
find "$tree" -name go.mod -not -path "*/vendor/*" -print0 \
  | xargs -0 sed -i 's|github.com/modern-go/reflect2 v1.0.1|github.com/modern-go/reflect2 v1.0.2|'
sed -i 's|github.com/modern-go/reflect2 v1.0.1|github.com/modern-go/reflect2 v1.0.2|' \
  "$tree/vendor/modules.txt"

# GOPATH layout as the package's debian/rules makes it.
mkdir -p "$WORK/gopath/src/k8s.io"
ln -s "$tree" "$WORK/gopath/src/k8s.io/kubernetes"

echo "building kube-apiserver and kube-controller-manager (about 9 minutes on 2 cores)" >&2
(
  cd "$WORK/gopath/src/k8s.io/kubernetes"
  export GOPATH="$WORK/gopath" GOCACHE="$WORK/gocache" CGO_ENABLED=0 GOPROXY=off GOFLAGS= \
    GO111MODULE=auto KUBE_GIT_VERSION="$VERSION" KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
    KUBE_GIT_TREE_STATE=clean
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
)

mkdir -p "$CACHE"
for b in "${BINARIES[@]}"; do
  built="$(find "$tree/_output" -type f -name "$b" -perm -u+x | head -n 1)"
  [ -n "$built" ] || { echo "build produced no $b" >&2; exit 1; }
  install -m 0755 "$built" "$CACHE/$b.tmp"
  mv "$CACHE/$b.tmp" "$CACHE/$b"
done
echo "$BUILD_ID" >"$CACHE/BUILD_ID"
echo "built in $(( $(date +%s) - start )) s" >&2
echo "$CACHE"
