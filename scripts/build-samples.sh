#!/usr/bin/env bash
# Builds the Wasm samples (release) and copies them to stable paths:
#   samples/out/hello-http.wasm   wasi:http/incoming-handler component   (wasm32-wasip2)
#   samples/out/hello-job.wasm    wasi:cli/run command component         (wasm32-wasip2)
#   samples/out/hello-job-p1.wasm _start command core module             (wasm32-wasip1)
#   samples/out/hello-container.tar  the hello-http protocol as a native service, an OCI image
#                                    archive (x86_64-unknown-linux-musl, static)
#   samples/out/hello-job-container.tar  hello-job as a native program in an OCI image archive
#                                    (the containerd runtime's conformance fixture)
# Idempotent: installs the two rustup targets only if missing, cargo rebuilds only what
# changed, and an artifact in out/ is only replaced when its bytes changed.
# The guest crates are their own Cargo workspace (samples/Cargo.toml, with ../sdk) and build
# into samples/target, never touching the root workspace or its target/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SAMPLES="$ROOT/samples"
OUT="$SAMPLES/out"
say() { echo "build-samples: $*" >&2; }

installed=$(rustup target list --installed)
for target in wasm32-wasip1 wasm32-wasip2 x86_64-unknown-linux-musl; do
  grep -qx "$target" <<<"$installed" || { say "installing rustup target $target"; rustup target add "$target"; }
done

cd "$SAMPLES"
export CARGO_TARGET_DIR="$SAMPLES/target"
cargo build --locked --release --target wasm32-wasip2 -p hello-http -p hello-job
cargo build --locked --release --target wasm32-wasip1 -p hello-job
cargo build --locked --release --target x86_64-unknown-linux-musl -p hello-container

# copy SRC DEST KIND: checks the Wasm header (component: version 0x0d layer 1; core module:
# version 1) and replaces DEST only if the contents changed.
copy() {
  local src=$1 dest=$2 kind=$3 header
  header=$(od -An -tx1 -N8 "$src" | tr -d ' \n')
  case "$kind:$header" in
    component:0061736d0d000100 | module:0061736d01000000) ;;
    *) say "$src is not a Wasm $kind (header $header)"; exit 1 ;;
  esac
  if ! cmp -s "$src" "$dest"; then
    cp "$src" "$dest.tmp" && chmod 0644 "$dest.tmp" && mv -f "$dest.tmp" "$dest"
  fi
  say "$(printf '%-28s %8d bytes  %s' "${dest#"$ROOT"/}" "$(stat -c %s "$dest")" "$kind")"
}

mkdir -p "$OUT"
copy target/wasm32-wasip2/release/hello_http.wasm "$OUT/hello-http.wasm" component
copy target/wasm32-wasip2/release/hello-job.wasm "$OUT/hello-job.wasm" component
copy target/wasm32-wasip1/release/hello-job.wasm "$OUT/hello-job-p1.wasm" module

# The container sample: the static binary packed as an OCI image archive (deterministic, so an
# unchanged binary leaves the archive unchanged).
python3 "$ROOT/scripts/oci-pack.py" target/x86_64-unknown-linux-musl/release/hello-container \
  "$OUT/hello-container.tar" hello-container:latest --port 8080
say "$(printf '%-28s %8d bytes  %s' "samples/out/hello-container.tar" "$(stat -c %s "$OUT/hello-container.tar")" "OCI image archive")"

# hello-job as a native program in a container image: the same command as the Wasm sample, so the
# containerd runtime runs the conformance suite's `hello` fixture (args, env, exit code).
cargo build --locked --release --target x86_64-unknown-linux-musl -p hello-job
python3 "$ROOT/scripts/oci-pack.py" target/x86_64-unknown-linux-musl/release/hello-job \
  "$OUT/hello-job-container.tar" hello-job-container:latest
say "$(printf '%-28s %8d bytes  %s' "samples/out/hello-job-container.tar" "$(stat -c %s "$OUT/hello-job-container.tar")" "OCI image archive")"
