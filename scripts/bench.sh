#!/usr/bin/env bash
# Control-plane benchmarks: Wharf (release build) next to a single-node etcd on the same machine,
# in one run, with the same client load. Prints one table and appends it, with the date, the
# machine and the versions, to BENCHMARKS.md. Traffic stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null; then
  echo "bench: installing Debian etcd-server (the reference)" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >/dev/null
fi

cargo build --release --bin wharf -p wharf --bin wharf-bench -p wharf-e2e >&2

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

ETCD_PORT=$(free_port); ETCD_PEER=$(free_port)
etcd --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER" >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)

API_PORT=$(free_port); GW_PORT=$(free_port)
target/release/wharf up --data-dir "$WORK/wharf" --api-addr "127.0.0.1:$API_PORT" \
  --gateway-addr "127.0.0.1:$GW_PORT" --containerd off >"$WORK/wharf.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done

TABLE="$WORK/table.md"
target/release/wharf-bench --wharf "http://127.0.0.1:$API_PORT" --etcd "http://127.0.0.1:$ETCD_PORT" "$@" | tee "$TABLE"

{
  echo
  echo "## $(date -u +%Y-%m-%d) — $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(rustc --version); etcd $(etcd --version | awk '/etcd Version/{print $3}'). Client and servers share the machine."
  echo
  cat "$TABLE"
} >> BENCHMARKS.md
echo "bench: results appended to BENCHMARKS.md" >&2
