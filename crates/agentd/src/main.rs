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
    keep_the_heap_in_small_pages();
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

/// Transparent huge pages off for this process. mimalloc's arenas are large aligned reservations, and a 2 MiB
/// huge page that holds a few live objects counts whole in the RSS: with them, 200 concurrent text streams
/// peaked at 104–109 MB of RSS (idle 39 MB) for a live heap of ~29 MB (heaptrack); without, 64–66 MB (idle 28 MB),
/// at the same turns/s and CPU per turn (bench-relay, alternating, 2026-12-01). mimalloc's `no_thp` feature keeps
/// it from asking for them (the kernel's `madvise` mode, the Debian and Ubuntu default); this flag also keeps the
/// kernel from handing them out unasked (`always` mode).
/// Best effort: kernels before 3.15 refuse it, and then nothing changes.
#[cfg(target_os = "linux")]
fn keep_the_heap_in_small_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[cfg(not(target_os = "linux"))]
fn keep_the_heap_in_small_pages() {}
