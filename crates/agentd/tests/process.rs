//! The child-process harness itself (`agentd_testkit::ServerProcess`) against the real binary: it finds the
//! address, signs tokens the server accepts, reads memory and logs, survives restarts and runs replicas.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_testkit::{ServerOptions, ServerProcess};
use std::time::Duration;

const SECRET: &str = "process-test-secret-0123456789abcdefgh";

fn opts() -> ServerOptions {
    ServerOptions::new(env!("CARGO_BIN_EXE_agentd"))
}

#[tokio::test]
async fn zero_config_server_comes_up_and_accepts_its_dev_token() {
    let server = ServerProcess::start(opts()).await;
    let res = server
        .http()
        .get(server.url("/v1/agents"))
        .bearer_auth(server.token("demo", "dev"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    // The offline model answers every agent, and the agents say so, as their turns' `model` does.
    for agent in body["data"].as_array().unwrap() {
        assert_eq!(agent["model"], "agentd-offline", "{agent}");
    }
    assert!(server.logs().iter().any(|l| l.contains("export AGENTD_TOKEN=")));
    let (rss, peak) = (server.rss_kb(), server.peak_rss_kb());
    assert!(rss > 0 && peak >= rss, "rss {rss} KiB, peak {peak} KiB");
    // The offline model draws its images (tens of ms of CPU each) on threads of its own, not on the async
    // workers every other stream of the server needs.
    #[cfg(target_os = "linux")]
    {
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect();
        assert!(
            threads.iter().any(|t| t.starts_with("fake-builder")),
            "{threads:?}"
        );
    }
}

#[tokio::test]
async fn sigterm_stops_it_and_restart_brings_it_back_on_the_same_state() {
    let mut server =
        ServerProcess::start(opts().env("AUTH_JWT_SECRET", SECRET).env("LOG_FORMAT", "json")).await;
    let tok = server.token("acme", "u1");
    let chat = server
        .http()
        .post(server.url("/v1/chat"))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"agent": "assistant", "message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    let conv = chat.json::<serde_json::Value>().await.unwrap()["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    server.sigterm();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(server.logs().iter().any(|l| l.contains("\"stopped\"")));

    let first_pid = server.pid();
    server.restart().await;
    assert_ne!(server.pid(), first_pid);
    let (status, _) = get(&server, &format!("/v1/conversations/{conv}"), &tok).await;
    assert_eq!(status, 200, "the SQLite file under var/ survived the restart");

    server.kill9();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("dies on SIGKILL");
    assert!(!status.success());
    server.options_mut().env.push(("LOG_LEVEL".into(), "warn".into()));
    server.restart().await;
    assert_eq!(get(&server, "/healthz", &tok).await.0, 200);
    let current = server.current_logs().join("\n");
    assert!(current.contains("\"listening\""), "{current}");
    assert!(
        !current.contains("\"request\""),
        "LOG_LEVEL=warn took effect: {current}"
    );
    let all = server.logs().join("\n");
    assert!(
        all.contains("\"request\"") && all.contains("\"stopped\""),
        "earlier lines are kept"
    );
}

#[tokio::test]
async fn three_replicas_share_one_postgres_database_and_one_bucket() {
    let db = agentd_testkit::fresh_postgres().await;
    let bucket = format!("replicas-{:016x}", rand::random::<u64>());
    let base = opts()
        .env("AUTH_JWT_SECRET", SECRET)
        .database(&db.settings.url)
        .s3_stand_in(&bucket);
    let a = ServerProcess::start(base.clone()).await;
    let b = ServerProcess::start(base.clone()).await;
    let c = ServerProcess::start(base).await;
    assert!(a.addr() != b.addr() && b.addr() != c.addr());
    let tok = a.token("acme", "u1");
    let res = a
        .http()
        .post(a.url("/v1/chat"))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"agent": "assistant", "message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for s in [&b, &c] {
        let (status, body) = get(s, "/v1/conversations", &tok).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    }
}

#[tokio::test]
async fn a_refused_configuration_is_reported_with_the_log() {
    let err = ServerProcess::try_start(opts().env("IMAGE_DEFAULT_FORMAT", "gif"))
        .await
        .err()
        .expect("the server refuses to start");
    assert_eq!(err.exit.and_then(|s| s.code()), Some(2));
    assert!(err.log.contains("IMAGE_DEFAULT_FORMAT=gif"), "{err}");
}

async fn get(server: &ServerProcess, path: &str, tok: &str) -> (reqwest::StatusCode, serde_json::Value) {
    let res = server
        .http()
        .get(server.url(path))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap_or_default())
}

/// On its development secret the server gives the playground a full-scope token for tenant `demo` — only to a
/// browser on its own machine, even when it listens on every interface (as the container image does): not to
/// another address, not through a proxy (which would make every client look local), not to a page whose name
/// was rebound to 127.0.0.1, and not without the key of the playground link it printed (a same-host proxy that
/// adds no forwarding header looks local).
#[tokio::test]
async fn the_dev_token_is_given_only_to_this_machine() {
    let server = ServerProcess::start(opts().env("BIND_ADDR", "0.0.0.0:0")).await;
    let port = server.addr().port();
    let key = server
        .logs()
        .iter()
        .find_map(|l| l.split_once("#key=").map(|(_, k)| k.trim().to_owned()))
        .expect("the banner prints the playground link with its key");
    let token_for = |ip: std::net::IpAddr, proxied: bool| {
        let mut req = server
            .http()
            .get(format!(
                "http://{}/playground/config.json",
                std::net::SocketAddr::new(ip, port)
            ))
            .header("x-playground-key", &key);
        if proxied {
            req = req.header("x-forwarded-for", "203.0.113.9");
        }
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.unwrap()["dev_token"].clone()
        }
    };
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    assert!(
        token_for(local, false).await.is_string(),
        "the zero-config playground works"
    );
    assert!(token_for(local, true).await.is_null(), "through a proxy");
    let keyless = server
        .http()
        .get(format!("http://127.0.0.1:{port}/playground/config.json"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = keyless.json().await.unwrap();
    assert!(body["dev_token"].is_null(), "without the link's key: {body}");
    // A page of another site whose name was rebound to 127.0.0.1 asks with that name.
    let rebound = server
        .http()
        .get(format!("http://127.0.0.1:{port}/playground/config.json"))
        .header("x-playground-key", &key)
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = rebound.json().await.unwrap();
    assert!(body["dev_token"].is_null(), "for a rebound name: {body}");
    // This machine's address on its outward interface, if it has one (a UDP connect sends nothing).
    let outward = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = outward {
        assert!(token_for(ip, false).await.is_null(), "from {ip}");
    } else {
        eprintln!("no outward interface: only the proxied case is checked");
    }
}

/// Download links the server signs itself start with `PUBLIC_BASE_URL` whatever it is — the value it once took
/// for its own default (`http://127.0.0.1:8080`) too, which it replaced with its bound address — and, unset, with
/// the bound address.
#[tokio::test]
async fn self_signed_links_start_with_public_base_url_when_set_and_the_bound_address_when_not() {
    let png = {
        use base64::Engine as _;
        let b64 =
            agentd_fake_upstream::images::image_b64(agentd_fake_upstream::images::Format::Png, 8, 8, 3, 0);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().as_bytes())
            .unwrap()
    };
    for public in [Some("http://127.0.0.1:8080"), None] {
        let mut o = opts().env("AUTH_JWT_SECRET", SECRET);
        if let Some(p) = public {
            o = o.env("PUBLIC_BASE_URL", p);
        }
        let server = ServerProcess::start(o).await;
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(png.clone()).file_name("x.png"),
        );
        let res = server
            .http()
            .post(server.url("/v1/uploads"))
            .bearer_auth(server.token("acme", "u1"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: serde_json::Value = res.json().await.unwrap();
        let url = v["url"].as_str().unwrap();
        let expected = public.map_or_else(|| format!("http://{}", server.addr()), str::to_owned);
        assert!(
            url.starts_with(&format!("{expected}/v1/files/")),
            "{public:?}: {url}"
        );
    }
}
