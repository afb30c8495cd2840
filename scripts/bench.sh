#!/usr/bin/env bash
# Benchmarks, side by side with the peer in one run, printed as one table and appended (with the
# date, machine and versions) to BENCHMARKS.md:
#   - control plane: durable creates and watch delivery, Wharf next to a single-node etcd;
#   - scheduler: pods placed per second over 1,000 simulated nodes (in process);
#   - Wasm: hello-http through Wharf's gateway next to `wasmtime serve` (same component, same
#     wrk load), pod create→Running, first request, density;
#   - containers: pod create→Running and delete next to `ctr run -d` / `ctr tasks rm -f` of the
#     same image on the same (Wharf-managed) containerd, idle memory per container pod next to
#     a Wasm pod;
#   - scaling: the first request to a Wasm function and to a container scaled to zero (the
#     gateway wakes it) next to a request to a running replica, and a load step until the HPA's
#     new replicas are Ready (a Wharf with --hpa-sync-period 1s).
# It installs what it needs (etcd-server and wrk from Debian, the wasmtime 48.0.8 CLI with cargo,
# cached under $WHARF_TOOLS; containerd, runc and the CNI plugins come with scripts/setup.sh).
# Traffic stays on loopback and in the pod networks the container bench creates.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${WHARF_TOOLS:-$HOME/.cache/wharf-tools}
WASMTIME="$TOOLS/wasmtime-48.0.8/bin/wasmtime"

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing Debian ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x "$WASMTIME" ]; then
  echo "bench: building the wasmtime 48.0.8 CLI once (about 20 minutes), cached in $TOOLS" >&2
  cargo install wasmtime-cli --version 48.0.8 --locked --root "$TOOLS/wasmtime-48.0.8" >&2
fi

scripts/build-samples.sh >&2
cargo build --release --bin wharf -p wharf --bin wharf-bench --bin wharf-bench-wasm --bin wharf-bench-containers --bin wharf-bench-scheduler --bin wharf-bench-scaling -p wharf-e2e >&2

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket,sys;s=socket.socket();s.bind((sys.argv[1],0));print(s.getsockname()[1])' "${1:-127.0.0.1}"; }
wait_http() { for _ in $(seq 1 150); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "bench: $1 did not come up" >&2; return 1; }

# Control plane: Wharf and etcd.
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
wait_http "http://127.0.0.1:$API_PORT/readyz"; wait_http "http://127.0.0.1:$ETCD_PORT/health"

TABLE="$WORK/table.md"
{
  echo "| measurement | Wharf | peer (same machine, same run) | ratio |"
  echo "|---|---|---|---|"
} | tee "$TABLE"
target/release/wharf-bench --wharf "http://127.0.0.1:$API_PORT" --etcd "http://127.0.0.1:$ETCD_PORT" | tee -a "$TABLE"
# Scheduler: the pure placement of 30,000 pods over 1,000 simulated nodes, in process.
target/release/wharf-bench-scheduler | tee -a "$TABLE"

# Wasm: a fresh Wharf with its gateway on 127.0.0.2, next to wasmtime serve.
SERVE_PORT=$(free_port)
"$WASMTIME" serve -Scli --addr "127.0.0.1:$SERVE_PORT" samples/out/hello-http.wasm >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
API2=$(free_port); GW2=$(free_port 127.0.0.2)
target/release/wharf up --data-dir "$WORK/wharf-wasm" --api-addr "127.0.0.1:$API2" \
  --gateway-addr "127.0.0.2:$GW2" --containerd off >"$WORK/wharf-wasm.log" 2>&1 &
WHARF2=$!; PIDS+=($WHARF2)
wait_http "http://127.0.0.1:$API2/readyz"; wait_http "http://127.0.0.1:$SERVE_PORT/"
target/release/wharf-bench-wasm --wharf "http://127.0.0.1:$API2" --gateway-ip 127.0.0.2 --wharf-pid "$WHARF2" \
  --wasmtime-serve "http://127.0.0.1:$SERVE_PORT" --component samples/out/hello-http.wasm "$@" | tee -a "$TABLE"
# Its thousand functions are not needed any more: stop it, so that the container bench runs on
# a quieter machine.
kill "$WHARF2" 2>/dev/null || true; wait "$WHARF2" 2>/dev/null || true

# Containers: a fresh Wharf with a containerd of its own (managed: socket in its data dir,
# namespace wharf), its gateway on 127.0.0.3, its own pod bridge and range; `ctr` drives that
# same containerd for the peer figures. Stopped gracefully right after, so that it stops its
# containerd before the data dir goes.
API3=$(free_port); GW3=$(free_port 127.0.0.3)
target/release/wharf up --data-dir "$WORK/wharf-containers" --api-addr "127.0.0.1:$API3" \
  --gateway-addr "127.0.0.3:$GW3" --containerd managed --pod-cidr 10.77.0.0/24 --pod-bridge wbench0 \
  >"$WORK/wharf-containers.log" 2>&1 &
WHARF3=$!; PIDS+=($WHARF3)
wait_http "http://127.0.0.1:$API3/readyz"
target/release/wharf-bench-containers --wharf "http://127.0.0.1:$API3" --wharf-pid "$WHARF3" \
  --containerd-socket "$WORK/wharf-containers/containerd/containerd.sock" \
  --image-archive samples/out/hello-container.tar --component samples/out/hello-http.wasm | tee -a "$TABLE"
kill "$WHARF3" 2>/dev/null || true; wait "$WHARF3" 2>/dev/null || true

# Scaling: a fresh Wharf with a containerd of its own and an HPA sync period of 1 s (Kubernetes'
# default is 15 s), its gateway on 127.0.0.4, its own pod bridge and range. The bench removes its
# workloads and waits until that containerd holds no container; then Wharf is stopped gracefully.
API4=$(free_port); GW4=$(free_port 127.0.0.4)
target/release/wharf up --data-dir "$WORK/wharf-scaling" --api-addr "127.0.0.1:$API4" \
  --gateway-addr "127.0.0.4:$GW4" --containerd managed --hpa-sync-period 1s \
  --pod-cidr 10.78.0.0/24 --pod-bridge wbench1 >"$WORK/wharf-scaling.log" 2>&1 &
WHARF4=$!; PIDS+=($WHARF4)
wait_http "http://127.0.0.1:$API4/readyz"
target/release/wharf-bench-scaling --wharf "http://127.0.0.1:$API4" --gateway-ip 127.0.0.4 --containers \
  --containerd-socket "$WORK/wharf-scaling/containerd/containerd.sock" \
  --component samples/out/hello-http.wasm --image-archive samples/out/hello-container.tar | tee -a "$TABLE"
kill "$WHARF4" 2>/dev/null || true; wait "$WHARF4" 2>/dev/null || true

{
  echo
  echo "## $(date -u +%Y-%m-%d) — $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(rustc --version); etcd $(etcd --version | awk '/etcd Version/{print $3}'); $("$WASMTIME" --version); wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'); containerd $(containerd --version | awk '{print $3}'); runc $(runc --version | awk 'NR==1{print $3}'). Load generators and servers share the machine."
  echo
  cat "$TABLE"
} >> BENCHMARKS.md
echo "bench: results appended to BENCHMARKS.md" >&2
