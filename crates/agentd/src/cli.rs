//! The command line: `serve` (the default), `migrate`, `agents check`, `token`, `tenant suspend|resume`,
//! `config`, `healthcheck`, `openapi`. Every command but `openapi` (which depends on no configuration) loads
//! the same layered configuration first.

use agentd_agents::AgentRegistry;
use agentd_auth::{Authenticator, Scope, ScopeSet, TenantId};
use agentd_config::Settings;
use agentd_db::{Db, TenantStatus};
use clap::{Parser, Subcommand};
use std::path::Path;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "agentd",
    version,
    about = "Multi-tenant agent backend for the OpenAI Responses API"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply the database migrations to DATABASE_URL.
    Migrate,
    /// Agent files.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Mint a bearer token signed with the configured HS256 secret (or the development secret).
    Token {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// Scopes (repeat or space-separate); all scopes when omitted.
        #[arg(long, num_args = 1..)]
        scope: Vec<String>,
        /// Lifetime, e.g. 3600, 90m, 12h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
    /// Suspend or resume a tenant.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Print the merged configuration, secrets redacted.
    Config,
    /// Exit 0 when the server on BIND_ADDR (or --url) answers GET /readyz with 200, else 1 (for HEALTHCHECK).
    Healthcheck {
        /// The readiness URL; default http://<BIND_ADDR, loopback for 0.0.0.0>/readyz.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (what GET /openapi.json answers).
    Openapi,
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Validate the agents folder and print each agent's effective configuration.
    Check,
}

#[derive(Subcommand)]
enum TenantCommand {
    Suspend { id: String },
    Resume { id: String },
}

/// Prints an error for an operator and returns the failure exit code.
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    #[expect(clippy::print_stderr, reason = "operator-facing CLI output")]
    {
        eprintln!("agentd: {message}");
    }
    ExitCode::from(2)
}

#[expect(clippy::print_stdout, reason = "operator-facing CLI output")]
fn out(text: impl std::fmt::Display) {
    println!("{text}");
}

pub async fn run(cli: Cli) -> ExitCode {
    if matches!(cli.command, Some(Command::Openapi)) {
        // Made from the server's types alone: it prints even where no configuration would load.
        out(agentd_http::document_json().trim_end());
        return ExitCode::SUCCESS;
    }
    let settings = match agentd_config::load(Path::new(".")) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Box::pin(crate::serve::serve(settings)).await,
        Command::Migrate => migrate(&settings).await,
        Command::Agents {
            command: AgentsCommand::Check,
        } => agents_check(&settings),
        Command::Token {
            tenant,
            user,
            scope,
            ttl,
        } => token(&settings, &tenant, &user, &scope, &ttl),
        Command::Tenant { command } => tenant(&settings, command).await,
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| crate::healthcheck::readyz_url(settings.http.bind_addr));
            return match crate::healthcheck::check(&url).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    fail(e);
                    ExitCode::from(1)
                }
            };
        }
        Command::Openapi => Ok(()), // printed above, before the configuration

        Command::Config => {
            out(serde_json::to_string_pretty(&settings.redacted()).unwrap_or_default());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database).await?;
    let pending = db.pending_migrations().await?;
    db.migrate().await?;
    out(format_args!(
        "{}: applied {pending} migration(s); schema is current",
        settings.database.redacted_url()
    ));
    Ok(())
}

pub fn load_agents(settings: &Settings) -> anyhow::Result<AgentRegistry> {
    Ok(AgentRegistry::load(
        &settings.agents_dir,
        &settings.image,
        &settings.models(),
    )?)
}

fn agents_check(settings: &Settings) -> anyhow::Result<()> {
    let registry = load_agents(settings)?;
    for a in registry.iter() {
        let mut view = serde_json::json!({
            "key": a.key, "display_name": a.display_name, "file": a.file.display().to_string(),
            "model": a.model, "model_from": a.model_source, "default": a.default, "tool_keys": a.tool_keys,
            "instructions_chars": a.instructions.chars().count(),
        });
        if let Some(img) = &a.image {
            view["tools"] = serde_json::json!({ "image_generation": img });
        }
        out(serde_json::to_string_pretty(&view)?);
    }
    out(format_args!(
        "{} agent(s) OK in {}",
        registry.iter().count(),
        settings.agents_dir.display()
    ));
    Ok(())
}

/// Parses `3600`, `90s`, `90m`, `12h` or `7d`.
fn parse_ttl(s: &str) -> anyhow::Result<chrono::Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("--ttl {s:?}: use seconds or 90m, 12h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => anyhow::bail!("--ttl {s:?}: use seconds or 90m, 12h, 7d"),
    };
    anyhow::ensure!(
        secs > 0 && secs <= 366 * 86_400,
        "--ttl {s:?}: use 1 second to 366 days"
    );
    Ok(chrono::Duration::seconds(secs))
}

fn token(settings: &Settings, tenant: &str, user: &str, scopes: &[String], ttl: &str) -> anyhow::Result<()> {
    let tenant = TenantId::parse(tenant)
        .map_err(|_| anyhow::anyhow!("--tenant {tenant:?}: use {}", TenantId::RULE))?;
    let scope_set = if scopes.is_empty() {
        None
    } else {
        let words: Vec<&str> = scopes.iter().flat_map(|s| s.split_whitespace()).collect();
        for w in &words {
            anyhow::ensure!(
                Scope::ALL.iter().any(|s| s.as_str() == *w),
                "--scope {w:?}: use chat, conversations:read, conversations:write or agents:read"
            );
        }
        Some(ScopeSet::parse(&words.join(" ")))
    };
    let auth = Authenticator::new(&settings.auth, &settings.var_dir.join("dev-jwt-secret"))?;
    out(auth.mint(&tenant, user, scope_set, parse_ttl(ttl)?)?);
    Ok(())
}

async fn tenant(settings: &Settings, command: TenantCommand) -> anyhow::Result<()> {
    let (id, status) = match command {
        TenantCommand::Suspend { id } => (id, TenantStatus::Suspended),
        TenantCommand::Resume { id } => (id, TenantStatus::Active),
    };
    let tenant =
        TenantId::parse(&id).map_err(|_| anyhow::anyhow!("tenant {id:?}: use {}", TenantId::RULE))?;
    let db = Db::connect(&settings.database).await?;
    db.prepare(&settings.database).await?;
    db.set_tenant_status(&tenant, status).await?;
    out(format_args!("tenant {id} is now {}", status.as_str()));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttl_units() {
        assert_eq!(super::parse_ttl("90m").unwrap().num_seconds(), 5400);
        assert_eq!(super::parse_ttl("3600").unwrap().num_seconds(), 3600);
        assert_eq!(super::parse_ttl("7d").unwrap().num_seconds(), 604_800);
        assert!(super::parse_ttl("0").is_err());
        assert!(super::parse_ttl("5y").is_err());
    }
}
