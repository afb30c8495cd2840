# Wharf — two commands on a fresh machine: `make up` and `make test`.
# Every target installs what it needs first (scripts/setup.sh is idempotent and quick when
# everything is there).

DATA_DIR ?= .wharf
WHARF_TOOLS ?= $(HOME)/.cache/wharf-tools
export WHARF_TOOLS

.PHONY: up setup build release test unit e2e lint bench clean samples push-samples

setup:
	@scripts/setup.sh

build:
	cargo build --workspace --bins

release:
	cargo build --release --bin wharf

## Install what is missing, build, and start Wharf on its embedded defaults.
up: setup release
	target/release/wharf up --data-dir $(DATA_DIR)

## Every test: unit, integration, end-to-end (real wharf processes, kubectl, Python client),
## and the guest SDK and samples' own tests.
test: setup lint build samples
	cargo nextest run --workspace --no-fail-fast
	cd samples && cargo test --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cd samples && cargo fmt --all -- --check && cargo clippy --locked --all-targets -- -D warnings

## Benchmarks, side by side with the reference (etcd), printed as one table.
bench: setup release
	scripts/bench.sh

## Wasm sample artifacts into samples/out/ (guest workspace samples/Cargo.toml, own target dir).
samples:
	scripts/build-samples.sh

## Publish the sample artifacts to the Wharf that $KUBECONFIG points at.
push-samples: samples release
	target/release/wharf push samples/out/hello-http.wasm --name hello-http:latest
	target/release/wharf push samples/out/hello-job.wasm --name hello-job:latest
	target/release/wharf push samples/out/hello-job-p1.wasm --name hello-job-p1:latest
	target/release/wharf image import samples/out/hello-container.tar
	target/release/wharf image import samples/out/hello-job-container.tar

clean:
	cargo clean
