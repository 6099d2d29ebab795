//! `agentd`: the server binary. Wiring only — `.env` ([`dotenv`]), configuration, telemetry, and the subcommands
//! in [`cli`].

mod cli;
mod dotenv;
mod healthcheck;
mod metrics;
mod serve;
mod telemetry;

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a turn makes many small short-lived allocations on several threads
/// (perf put glibc's malloc and free at 12 % of agentd's CPU on text turns).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = <cli::Cli as clap::Parser>::parse();
    // Before the configuration reads the environment and before the runtime starts threads.
    if let Err(e) = dotenv::load(std::path::Path::new(".env")) {
        return cli::fail(e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return cli::fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(cli::run(args))
}
