# agentd tasks. `scripts/just <recipe>` installs just when missing. CI runs `just test` via .ci/run.

set dotenv-load := false

# List the recipes.
default:
    @just --list

# Run the server on its zero-config defaults (SQLite, local disk, dev token, offline model without OPENAI_API_KEY).
run *ARGS:
    cargo run -p agentd -- {{ARGS}}

# The whole suite: fmt, clippy -D warnings, every test against real PostgreSQL / S3 / GCS stand-ins / fake upstream.
test *ARGS:
    scripts/test.sh {{ARGS}}

# fmt + clippy only.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all

# Apply migrations to DATABASE_URL.
migrate:
    cargo run -p agentd -- migrate

# Validate config/agents and print each agent's effective configuration.
agents-check:
    cargo run -p agentd -- agents check

# Start the test servers and print the exports: eval "$(just services-up)".
services-up:
    @scripts/test-services.sh start

services-down:
    @scripts/test-services.sh stop

# Relay benchmark: N concurrent streaming turns through agentd vs straight to the fake upstream (release build).
bench-relay *ARGS:
    cargo build --release -p agentd -p agentd_bench
    ./target/release/bench-relay {{ARGS}}

# Image benchmark: 20 concurrent 6 MB image turns into the S3 stand-in vs text-only turns (release build).
bench-images *ARGS:
    cargo build --release -p agentd -p agentd_bench
    ./target/release/bench-images {{ARGS}}

# Both benchmarks.
bench: bench-relay bench-images
