//! `fake-upstream` binary: serves the fake Responses API until Ctrl-C.
//!
//! Usage: `fake-upstream [--addr 127.0.0.1:8089] [--lenient] [--model-label NAME] [--no-auth] [--done]`

use agentd_fake_upstream::{FakeConfig, FakeUpstream};

fn usage() -> ! {
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "usage: fake-upstream [--addr HOST:PORT] [--lenient] [--model-label NAME] [--no-auth] [--done]"
        );
    }
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut cfg = FakeConfig {
        addr: ([127, 0, 0, 1], 8089).into(),
        ..FakeConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => match args.next().and_then(|a| a.parse().ok()) {
                Some(addr) => cfg.addr = addr,
                None => usage(),
            },
            "--lenient" => cfg.strict_previous_response = false,
            "--model-label" => cfg.model_override = Some(args.next().unwrap_or_else(|| usage())),
            "--no-auth" => cfg.require_auth = false,
            "--done" => cfg.send_done = true,
            _ => usage(),
        }
    }
    let fake = FakeUpstream::start(cfg).await?;
    #[allow(clippy::print_stdout)]
    {
        println!("fake upstream listening on {}", fake.base_url());
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = fake.wait() => {}
    }
    Ok(())
}
