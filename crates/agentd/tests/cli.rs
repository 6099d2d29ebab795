//! The `agentd` binary as an operator uses it, each run in its own directory with a clean environment.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::{ServerOptions, ServerProcess};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const SECRET: &str = "cli-test-secret-cli-test-secret-cli";

fn workdir() -> tempfile::TempDir {
    agentd_testkit::agent_workdir()
}

fn agentd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentd"));
    c.current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // `serve` here must never wait on, or collide over, the default metrics port.
        .env("METRICS_ADDR", "");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    agentd(dir, args, env).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_broken_agent_file_stops_startup_with_a_precise_message() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("config/agents/designer.toml"),
        "key='designer'\ndisplay_name='D'\ninstructions='x'\ntool_keys=['image_generation']\n\
         [tool_configs.image_generation]\nbackground='transparent'\nformat='jpeg'\n",
    )
    .unwrap();
    for args in [&["agents", "check"][..], &["serve"], &[]] {
        let out = run(dir.path(), args, &[("BIND_ADDR", "127.0.0.1:0")]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(
                "designer.toml: tool_configs.image_generation.background = \"transparent\" is not allowed: \
                          transparent needs output_format png or webp"
            ),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn agents_check_prints_the_effective_configuration() {
    let dir = workdir();
    let out = run(
        dir.path(),
        &["agents", "check"],
        &[
            ("AGENT_MODEL_DESIGNER", "gpt-5.5-pro"),
            ("IMAGE_DEFAULT_QUALITY", "low"),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("\"model\": \"gpt-5.5-pro\"") && stdout.contains("AGENT_MODEL_DESIGNER"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"quality\": \"high\""),
        "the agent's override beats IMAGE_DEFAULT_QUALITY: {stdout}"
    );
    assert!(stdout.contains("2 agent(s) OK"));
}

#[test]
fn bad_environment_names_the_variable() {
    let dir = workdir();
    let out = run(dir.path(), &["config"], &[("IMAGE_DEFAULT_FORMAT", "gif")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("IMAGE_DEFAULT_FORMAT=gif is not allowed: use one of png, jpeg, webp"),
        "{err}"
    );
}

#[test]
fn config_redacts_secrets() {
    let dir = workdir();
    let env = [
        ("AUTH_JWT_SECRET", SECRET),
        ("OPENAI_API_KEY", "sk-live-123"),
        ("DATABASE_URL", "postgres://a:pw123@h/db"),
    ];
    let out = run(dir.path(), &["config"], &env);
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    for s in [SECRET, "sk-live-123", "pw123"] {
        assert!(!stdout.contains(s), "{s} leaked: {stdout}");
    }
    assert!(stdout.contains("[redacted]") && stdout.contains("postgres://a:***@h/db"));
}

#[test]
fn token_mints_what_the_server_accepts() {
    let dir = workdir();
    let out = run(
        dir.path(),
        &[
            "token",
            "--tenant",
            "acme",
            "--user",
            "ops",
            "--scope",
            "chat agents:read",
            "--ttl",
            "5m",
        ],
        &[("AUTH_JWT_SECRET", SECRET)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tok = text(&out.stdout).trim().to_owned();
    let auth = agentd_auth::Authenticator::new(
        &agentd_auth::AuthSettings {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        },
        &dir.path().join("x"),
    )
    .unwrap();
    let p = auth.verify(&tok).unwrap();
    assert_eq!((p.tenant_id.as_str(), p.user_id.as_str()), ("acme", "ops"));
    assert!(
        p.scopes.contains(agentd_auth::Scope::Chat)
            && !p.scopes.contains(agentd_auth::Scope::ConversationsWrite)
    );
    let bad = run(
        dir.path(),
        &["token", "--tenant", "acme", "--user", "ops", "--scope", "admin"],
        &[("AUTH_JWT_SECRET", SECRET)],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--scope \"admin\""));
}

#[tokio::test]
async fn tenant_suspend_and_resume() {
    let dir = workdir();
    let url = format!("sqlite://{}/t.sqlite", dir.path().display());
    let env = [("DATABASE_URL", url.as_str())];
    let out = run(dir.path(), &["tenant", "suspend", "acme"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("tenant acme is now suspended"));
    let settings = agentd_db::DbSettings {
        url: url.clone(),
        ..Default::default()
    };
    let db = agentd_db::Db::connect(&settings).await.unwrap();
    assert_eq!(
        db.provision_tenant(&agentd_db::TenantId::parse("acme").unwrap())
            .await
            .unwrap(),
        agentd_db::TenantStatus::Suspended
    );
    assert!(
        run(dir.path(), &["tenant", "resume", "acme"], &env)
            .status
            .success()
    );
    assert_eq!(
        db.provision_tenant(&agentd_db::TenantId::parse("acme").unwrap())
            .await
            .unwrap(),
        agentd_db::TenantStatus::Active
    );
}

#[tokio::test]
async fn migrate_brings_postgres_up_to_date() {
    let t = agentd_testkit::fresh_postgres_unmigrated().await;
    let dir = workdir();
    let out = run(
        dir.path(),
        &["migrate"],
        &[("DATABASE_URL", t.settings.url.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(t.db.pending_migrations().await.unwrap(), 0);
    // serve refuses a database that is behind rather than migrating it silently.
    let fresh = agentd_testkit::fresh_postgres_unmigrated().await;
    let out = run(
        dir.path(),
        &["serve"],
        &[
            ("DATABASE_URL", fresh.settings.url.as_str()),
            ("BIND_ADDR", "127.0.0.1:0"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("run `agentd migrate`"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn zero_config_serve_prints_a_token_that_lists_the_agents() {
    let server = ServerProcess::start(ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))).await;
    let logs = server.logs();
    let token = logs
        .iter()
        .find_map(|l| l.trim().strip_prefix("export AGENTD_TOKEN="))
        .expect("the banner's token");
    let url = logs
        .iter()
        .filter(|l| l.trim_start().starts_with("curl "))
        .find_map(|l| l.find("http://").map(|i| l[i..].trim()))
        .expect("the banner's curl line");
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let var = server.dir().join("var");
    assert!(var.join("dev-jwt-secret").exists() && var.join("agentd.sqlite").exists());
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_no_secret() {
    let server = ServerProcess::start(
        ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))
            .env("LOG_FORMAT", "json")
            .env("AUTH_JWT_SECRET", SECRET)
            .env("OPENAI_API_KEY", "sk-never-logged-123")
            .env("DATABASE_URL", "sqlite://var/x.sqlite"),
    )
    .await;
    for line in server.logs() {
        serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    let token = text(
        &run(
            server.dir(),
            &["token", "--tenant", "t", "--user", "u"],
            &[("AUTH_JWT_SECRET", SECRET)],
        )
        .stdout,
    );
    let res = reqwest::Client::new()
        .get(server.url("/v1/agents/nope"))
        .header("x-request-id", "trace-me-42")
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let access = server
        .wait_for_log("trace-me-42", Duration::from_secs(10))
        .await
        .expect("the access log line");
    let v: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(
        (v["span"]["request_id"].as_str(), v["status"].as_u64()),
        (Some("trace-me-42"), Some(404)),
        "{access}"
    );
    let all = server.logs().join("\n");
    assert!(
        !all.contains(SECRET) && !all.contains("sk-never-logged-123"),
        "a secret reached the log"
    );
}

#[test]
fn openapi_prints_the_committed_document_without_any_configuration() {
    // An empty directory and a broken configuration layer: the document depends on neither.
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["openapi"], &[("BIND_ADDR", "not an address")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        printed == committed,
        "{} is stale: regenerate it with `cargo run -p agentd -- openapi > docs/openapi.json`",
        file.display()
    );
    let doc: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}
