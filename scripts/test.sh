#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test against real servers
# (PostgreSQL, the S3 and GCS stand-ins, the fake Responses API) that this script starts on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
started=$(date +%s)
step() { echo "==> $* ($(( $(date +%s) - started ))s)" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest (cargo install; a few minutes, once)"
  cargo install cargo-nextest --locked
fi
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "building the tests"
cargo nextest run --workspace --locked --no-run >/dev/null 2>&1 || cargo nextest run --workspace --locked --no-run

step "starting the test servers"
eval "$(scripts/test-services.sh start)"
trap 'scripts/test-services.sh stop >/dev/null 2>&1 || true' EXIT

step "running the tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
step "done"
