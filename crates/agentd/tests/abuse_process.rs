//! Hostile input and careless operators against the real binary (a child process, `ServerProcess`): the
//! offline model's `#fake:` directives cannot take the process down or grow it without bound, secrets lie
//! around with mode 0600 and never reach `agentd config` or the logs, and weak JWT secrets are refused.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::{ServerOptions, ServerProcess};
use serde_json::{Value, json};
use std::time::Duration;

fn opts() -> ServerOptions {
    ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))
}

/// `POST /v1/chat`; the status and the JSON body.
async fn chat(server: &ServerProcess, tok: &str, body: Value) -> (u16, Value) {
    let res = server
        .http()
        .post(server.url("/v1/chat"))
        .bearer_auth(tok)
        .timeout(Duration::from_secs(120))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{body}: no answer ({e})\n{}", server.logs().join("\n")));
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

async fn assert_healthy(server: &ServerProcess, after: &str) {
    let res = server.http().get(server.url("/healthz")).send().await;
    assert!(
        res.is_ok_and(|r| r.status() == 200),
        "/healthz does not answer after {after}\n{}",
        server.logs().join("\n")
    );
}

/// Peak RSS allowed while serving the hostile directives below (measured ~MB; see the report).
const PEAK_RSS_BOUND_KB: u64 = 600 * 1024;

#[tokio::test]
async fn offline_directives_cannot_take_the_zero_config_server_down() {
    let server = ServerProcess::start(opts()).await;
    let tok = server.token("acme", "u1");
    let cases = [
        ("assistant", "hi #fake:text big-other=5000000"),
        (
            "designer",
            "draw #fake:image big=5000000 images=4000000 partials=200",
        ),
        ("assistant", "hi #fake:text deltas=4000000000 chunk=1 big-other=6"),
        ("designer", "draw #fake:image big=6 chunk=1"),
        ("assistant", "hi #fake:text delay=600000 stall=600000 gap=600000"),
    ];
    for (agent, message) in cases {
        let (status, body) = chat(&server, &tok, json!({"agent": agent, "message": message})).await;
        assert_eq!(status, 200, "{message}: {body}");
        assert!(body["message"]["content"].is_string(), "{message}: {body}");
        let images = body["message"]["attachments"].as_array().map_or(0, Vec::len);
        assert!(images <= 4, "{message}: {images} images");
        assert_healthy(&server, message).await;
        eprintln!(
            "{message}: rss {} KiB, peak {} KiB",
            server.rss_kb(),
            server.peak_rss_kb()
        );
    }
    let peak = server.peak_rss_kb();
    assert!(peak < PEAK_RSS_BOUND_KB, "peak RSS {peak} KiB");
}

/// Growth allowed between the 10th and the 25th image turn on one conversation (each image is 4 MB of
/// base64; an unbounded image memo grows by 60 MB over those turns).
const GROWTH_BOUND_KB: u64 = 40 * 1024;

#[tokio::test]
async fn image_turns_do_not_grow_the_offline_model_without_bound() {
    let server = ServerProcess::start(opts()).await;
    let tok = server.token("acme", "u1");
    let mut conversation = Value::Null;
    let mut after_warmup = 0;
    for turn in 1..=25 {
        // Every turn continues the conversation: a new previous_response_id, so a new image variant.
        let body = json!({"agent": "designer", "conversation_id": conversation,
                          "message": format!("draw it again, turn {turn} #fake:image big=3")});
        let (status, v) = chat(&server, &tok, body).await;
        assert_eq!(status, 200, "turn {turn}: {v}");
        assert_eq!(
            v["message"]["attachments"].as_array().map(Vec::len),
            Some(1),
            "{v}"
        );
        conversation = v["conversation_id"].clone();
        if turn == 10 {
            after_warmup = server.rss_kb();
        }
    }
    let end = server.rss_kb();
    eprintln!("rss after 10 image turns {after_warmup} KiB, after 25 {end} KiB");
    assert!(
        end < after_warmup + GROWTH_BOUND_KB,
        "RSS grew from {after_warmup} KiB to {end} KiB over 15 image turns"
    );
    assert_healthy(&server, "25 image turns").await;
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_zero_config_server_makes_its_secret_files_private() {
    let server = ServerProcess::start(opts()).await;
    for name in ["dev-jwt-secret", "url-signing-secret"] {
        let path = server.dir().join("var").join(name);
        assert_eq!(mode(&path), 0o600, "{name}");
        assert!(std::fs::read_to_string(&path).unwrap().trim().len() >= 32);
    }
    let leftovers: Vec<_> = std::fs::read_dir(server.dir().join("var"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".secret-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_healthy(&server, "start").await;
}

#[cfg(unix)]
#[tokio::test]
async fn loose_secret_files_are_tightened_with_a_warning_and_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = agentd_testkit::agent_workdir();
    let var = dir.path().join("var");
    std::fs::create_dir_all(&var).unwrap();
    let kept = "kept-url-signing-secret-0123456789abcdef";
    for (name, value) in [
        ("url-signing-secret", kept),
        ("dev-jwt-secret", "kept-dev-jwt-secret-0123456789abcdefgh"),
    ] {
        std::fs::write(var.join(name), value).unwrap();
        std::fs::set_permissions(var.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let server = ServerProcess::start(opts().dir(dir.path())).await;
    for name in ["url-signing-secret", "dev-jwt-secret"] {
        assert_eq!(mode(&var.join(name)), 0o600, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(var.join("url-signing-secret")).unwrap(),
        kept
    );
    let warnings = server
        .logs()
        .into_iter()
        .filter(|l| l.contains("its mode is now 600"))
        .count();
    assert_eq!(warnings, 2, "{}", server.logs().join("\n"));
    // The kept dev secret still signs what the server accepts.
    let res = server
        .http()
        .get(server.url("/v1/agents"))
        .bearer_auth(server.token("acme", "u1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

const DB_PASSWORD: &str = "s3cret-p@ss";
const QUERY_PASSWORD: &str = "qu3ry-pw";
const SSL_PASSWORD: &str = "ssl-pw-9";
const GATEWAY_USER: &str = "gw-user";
const GATEWAY_PASSWORD: &str = "gw-pass-77";
const JWT_SECRET: &str = "abuse-process-secret-0123456789abcdef";

fn assert_no_secret(text: &str, what: &str) {
    for s in [
        DB_PASSWORD,
        "p@ss",
        QUERY_PASSWORD,
        SSL_PASSWORD,
        GATEWAY_USER,
        GATEWAY_PASSWORD,
        JWT_SECRET,
        "sk-never-shown-42",
    ] {
        assert!(!text.contains(s), "{what} shows {s:?}:\n{text}");
    }
}

#[tokio::test]
async fn agentd_config_and_the_json_logs_never_show_a_secret() {
    let db = agentd_testkit::fresh_postgres().await;
    let url = db
        .settings
        .url
        .replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1)
        + &format!("?sslpassword={SSL_PASSWORD}&password={QUERY_PASSWORD}");
    let base_url = format!("https://{GATEWAY_USER}:{GATEWAY_PASSWORD}@gateway.example/v1");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("AUTH_JWT_SECRET", JWT_SECRET),
        ("LOG_FORMAT", "json"),
    ];

    let config = std::process::Command::new(env!("CARGO_BIN_EXE_agentd"))
        .arg("config")
        .env_clear()
        .envs(env)
        .env("OPENAI_API_KEY", "sk-never-shown-42")
        .current_dir(agentd_testkit::agent_workdir().path())
        .output()
        .unwrap();
    assert!(config.status.success());
    let shown = String::from_utf8_lossy(&config.stdout);
    assert_no_secret(&shown, "agentd config");
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["openai"]["base_url"], "https://***@gateway.example/v1");
    let db_url = v["database"]["url"].as_str().unwrap();
    assert!(
        db_url.starts_with("postgres://postgres:***@127.0.0.1:")
            && db_url.ends_with("?sslpassword=***&password=***"),
        "{db_url}"
    );

    // The offline server (the upstream line of a keyed server is serve.rs's to redact).
    let mut options = opts();
    for (k, v) in env {
        options = options.env(k, v);
    }
    let server = ServerProcess::start(options).await;
    let res = server
        .http()
        .get(server.url("/v1/agents"))
        .bearer_auth(server.token("acme", "u1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server
        .wait_for_log("\"status\":200", Duration::from_secs(10))
        .await;
    let logs = server.logs().join("\n");
    assert!(
        logs.contains("starting agentd") && logs.contains("database ready"),
        "{logs}"
    );
    assert_no_secret(&logs, "the log");
}

#[test]
fn database_urls_are_redacted_whatever_their_shape() {
    let cases = [
        ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
        ("postgres://u:p@ss@h:5432/db", "postgres://u:***@h:5432/db"),
        (
            "postgres://u:a/b?c#d@h/db?sslmode=require",
            "postgres://u:***@h/db?sslmode=require",
        ),
        (
            "postgresql://u@h/db?password=x1&sslmode=require&SSLPASSWORD=x2",
            "postgresql://u@h/db?password=***&sslmode=require&SSLPASSWORD=***",
        ),
        ("sqlite://var/agentd.sqlite", "sqlite://var/agentd.sqlite"),
    ];
    for (url, want) in cases {
        let settings = agentd_db::DbSettings {
            url: url.to_owned(),
            ..Default::default()
        };
        assert_eq!(settings.redacted_url(), want, "{url}");
    }
}

#[tokio::test]
async fn weak_jwt_secrets_are_refused_at_startup_whatever_app_env_says() {
    for app_env in ["local", "production"] {
        for (secret, why) in [
            ("short-secret", "is too short"),
            ("change-me-change-me-change-me-change-me", "is a placeholder"),
            ("Please-CHANGEME-0123456789abcdefghijklmnop", "is a placeholder"),
        ] {
            let err = ServerProcess::try_start(opts().env("APP_ENV", app_env).env("AUTH_JWT_SECRET", secret))
                .await
                .err()
                .unwrap_or_else(|| panic!("APP_ENV={app_env}: {secret:?} was accepted"));
            assert_eq!(err.exit.and_then(|s| s.code()), Some(2), "{err}");
            assert!(
                err.log.contains(&format!("AUTH_JWT_SECRET {why}")) && err.log.contains("openssl rand"),
                "{err}"
            );
            assert!(!err.log.contains(secret), "the refusal echoes the secret: {err}");
        }
    }
    // A strong secret starts, in production too.
    let server = ServerProcess::start(
        opts()
            .env("APP_ENV", "production")
            .env("AUTH_JWT_SECRET", JWT_SECRET),
    )
    .await;
    assert_healthy(&server, "a strong secret").await;
}

/// Uploads a PNG of about `bytes` (local disk, so its signed link is served by agentd): the bytes, and the
/// link's path and query.
async fn upload_png(server: &ServerProcess, bytes: usize) -> (Vec<u8>, reqwest::Url) {
    use base64::Engine as _;
    let tok = server.token("acme", "u1");
    let png = base64::engine::general_purpose::STANDARD
        .decode(
            agentd_fake_upstream::images::image_b64(
                agentd_fake_upstream::images::Format::Png,
                64,
                64,
                7,
                bytes,
            )
            .as_str()
            .as_bytes(),
        )
        .unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png.clone()).file_name("big.png"),
    );
    let res = server
        .http()
        .post(server.url("/v1/uploads"))
        .bearer_auth(&tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let url = reqwest::Url::parse(res.json::<Value>().await.unwrap()["url"].as_str().unwrap()).unwrap();
    (png, url)
}

/// `GET` of a signed link on a raw connection with a receive buffer of `rcvbuf` bytes (small, so that the
/// server's writes block soon after the client stops reading).
async fn raw_get(server: &ServerProcess, url: &reqwest::Url, rcvbuf: u32) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    let mut tcp = socket.connect(server.addr()).await.unwrap();
    let req = format!(
        "GET {}?{} HTTP/1.1\r\nhost: agentd\r\n\r\n",
        url.path(),
        url.query().unwrap()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

/// How a connection's reading ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Still open: `until` bytes came, or nothing for 10 s.
    Open,
    /// The server closed it.
    Eof,
    /// With an error, e.g. a reset.
    Error(std::io::ErrorKind),
}

/// Reads until the server closes or `until` bytes came or nothing for 10 s, pausing `pause` after each read;
/// the bytes read and how it ended.
async fn read_on(tcp: &mut tokio::net::TcpStream, pause: Duration, until: usize) -> (usize, End) {
    use tokio::io::AsyncReadExt as _;
    let (mut total, mut buf) = (0, vec![0u8; 1 << 20]);
    while total < until {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Err(_) => return (total, End::Open),
            Ok(Ok(0)) => return (total, End::Eof),
            Ok(Err(e)) => return (total, End::Error(e.kind())),
            Ok(Ok(n)) => total += n,
        }
        tokio::time::sleep(pause).await;
    }
    (total, End::Open)
}

/// A signed download link needs no token, so anyone holding one can open many connections and read nothing.
/// Served from local disk in pieces, forty such readers of a 15 MB image cost the server a few buffers, not a
/// copy of the file each (600 MB when it was read whole per request); and a reader that does read gets it all.
#[tokio::test]
async fn stalled_downloads_do_not_hold_a_copy_of_the_file_each() {
    let server = ServerProcess::start(opts()).await;
    let (png, url) = upload_png(&server, 15_000_000).await;
    let before = server.rss_kb();
    let mut stalled = Vec::new();
    for _ in 0..40 {
        stalled.push(raw_get(&server, &url, 64 * 1024).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = server.rss_kb();
    eprintln!("rss {before} KiB before, {during} KiB with 40 stalled downloads of 15 MB");
    assert!(
        during < before + 100 * 1024,
        "RSS grew from {before} KiB to {during} KiB with 40 readers that read nothing"
    );
    drop(stalled);
    let whole = server.http().get(url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.content_length(), Some(png.len() as u64));
    assert!(whole.bytes().await.unwrap() == png, "the download is the upload");
    assert_healthy(&server, "40 stalled downloads").await;
}

/// Nor can they hold their connections for ever: a response the client has stopped taking is cut off after
/// `HTTP_WRITE_TIMEOUT_SECONDS` (here 2) of writes that cannot go through — with a reset, so that the server's
/// kernel drops what it still held for the client at once (with a plain close it went on offering it: the reader
/// got more, then the end) — while a slow reader who keeps reading (what came, every 100 ms, through a small
/// receive buffer, so that the server's writes block between its reads) gets the whole file however long it
/// takes. (Before the write timeout, the stalled connection stayed open: its reader got all 8 MB when it came
/// back.)
#[tokio::test]
async fn a_download_nobody_reads_is_cut_off_and_a_slow_one_is_not() {
    let server = ServerProcess::start(opts().env("HTTP_WRITE_TIMEOUT_SECONDS", "2")).await;
    let (png, url) = upload_png(&server, 8_000_000).await;
    let mut stalled = raw_get(&server, &url, 64 * 1024).await;
    let mut slow = raw_get(&server, &url, 128 * 1024).await;
    let whole = png.len() + 1; // the head too
    let slow = tokio::spawn(async move { read_on(&mut slow, Duration::from_millis(100), whole).await });
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (got, end) = read_on(&mut stalled, Duration::ZERO, usize::MAX).await;
    assert!(
        end == End::Error(std::io::ErrorKind::ConnectionReset) && got < png.len(),
        "a reader that stopped for 4 s got {got} of {} bytes, then {end:?}",
        png.len()
    );
    let (got, end) = slow.await.unwrap();
    assert!(
        end == End::Open && got >= whole,
        "a slow reader got {got} bytes (the file is {}), then {end:?}",
        png.len()
    );
    assert_healthy(&server, "a stalled and a slow download").await;
}
