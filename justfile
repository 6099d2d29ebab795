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

# Relay benchmark (issue 7 points 9-11): agentd vs straight to the fake, interleaved batches; added TTFE/TTLE and
# ratio at N=1,50,200, capacity turns/s at N=50, CPU of agentd and PostgreSQL and SQL statements/transactions per
# turn (private PostgreSQL cluster with pg_stat_statements; --db sqlite or --database-url URL). See
# crates/agentd_bench/README.md.
bench-relay *ARGS:
    cargo build --release -p agentd -p agentd_bench
    ./target/release/bench-relay {{ARGS}}

# Image benchmark (issue 7 points 3, 7, 8): 20 concurrent 6 MB image turns x 3 into SeaweedFS and s3s-fs (peak RSS,
# attachment after the upstream's output_item.done, CPU and SQL per image turn), and text turns beside 10 image turns.
# The first run installs s3s-fs 0.14.1 into ~/.cache/agentd (cargo install, ~3.5 min; --s3 seaweedfs skips it).
bench-images *ARGS:
    cargo build --release -p agentd -p agentd_bench
    ./target/release/bench-images {{ARGS}}

# Resume benchmark (issue 9): 3 replicas on one PostgreSQL and one bucket, 200 runs in flight whose streams drop and
# resume on another replica with Last-Event-ID; events lost / duplicated against a full replay, resumes/s, latency
# through another replica, run_events rows and bytes per run. See crates/agentd_bench/README.md.
bench-resume *ARGS:
    cargo build --release -p agentd -p agentd_bench
    ./target/release/bench-resume {{ARGS}}

# All benchmarks.
bench: bench-relay bench-images bench-resume
