//! `agentd`: the server binary. Wiring only — configuration, telemetry, and the subcommands in [`cli`].

mod cli;
mod serve;
mod telemetry;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <cli::Cli as clap::Parser>::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return cli::fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(cli::run(args))
}
