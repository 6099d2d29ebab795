//! The playground's HTTP side: the page and its files with a strict Content-Security-Policy and revalidated
//! caching, no dev token unless the server runs on its dev secret, and an `img-src` that admits exactly the
//! origin the object store's download URLs use (self-served links, or a MinIO/S3 public endpoint). The page
//! itself is driven in Chromium by `crates/agentd/tests/playground.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use agentd_testkit::TestApp;
use serde_json::json;

fn csp(res: &reqwest::Response) -> String {
    res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The `img-src` sources of a policy.
fn img_src(policy: &str) -> Vec<String> {
    policy
        .split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("img-src "))
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_page_and_its_files_are_served_strictly_and_revalidated() {
    let app = TestApp::builder(agentd_testkit::fresh_sqlite().await)
        .start()
        .await;
    let http = reqwest::Client::new();
    let page = http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let policy = csp(&page);
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(policy.contains(&format!("{directive};")), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(
        img_src(&policy),
        ["'self'", "data:", "blob:", &format!("http://{}", app.addr)],
        "self-served download links start with PUBLIC_BASE_URL"
    );
    let etag = page.headers()["etag"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("<script type=\"module\" src=\"/playground/app.js\">"));

    let again = http
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    for file in ["app.js", "api.js", "sse.js", "stream.js", "view.js"] {
        let res = http
            .get(app.url(&format!("/playground/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{file}");
        assert_eq!(
            res.headers()["content-type"],
            "text/javascript; charset=utf-8",
            "{file}"
        );
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    let css = http.get(app.url("/playground/app.css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");

    let missing = http.get(app.url("/playground/secrets.txt")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn no_dev_token_is_served_unless_the_server_runs_on_its_dev_secret() {
    // The test app signs with a configured secret, as any real deployment does.
    let app = TestApp::builder(agentd_testkit::fresh_sqlite().await)
        .start()
        .await;
    let res = reqwest::get(app.url("/playground/config.json")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "dev_token": null }));
}

#[tokio::test]
async fn presigned_image_urls_of_a_public_s3_endpoint_are_allowed_by_the_policy() {
    let endpoint = std::env::var("AGENTD_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("AGENTD_TEST_S3_ENDPOINT is not set: run `eval \"$(scripts/test-services.sh start)\"` first")
    });
    // Browsers reach the store under another name than the server does, as with MINIO_PUBLIC_ENDPOINT in compose.
    let public = endpoint.replace("127.0.0.1", "localhost");
    let app = TestApp::builder(agentd_testkit::fresh_sqlite().await)
        .storage(agentd_storage::StorageConfig {
            provider: agentd_storage::Provider::Minio,
            minio_endpoint: Some(endpoint.clone()),
            minio_public_endpoint: Some(public.clone()),
            minio_access_key: Some("minioadmin".into()),
            minio_secret_key: Some(agentd_storage::Secret::new("minioadmin")),
            minio_bucket: Some(format!("pg-{}", uuid::Uuid::now_v7().simple())),
            ..Default::default()
        })
        .start()
        .await;
    let token = app.token("acme", "u1", None);
    let turn = app
        .chat_json(
            &token,
            json!({ "agent": "designer", "message": "draw a lighthouse" }),
        )
        .await;
    let url = turn["message"]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url.starts_with(&format!("{public}/")), "{url}");

    let page = reqwest::get(app.url("/")).await.unwrap();
    let sources = img_src(&csp(&page));
    assert!(
        sources.iter().any(|s| url.starts_with(&format!("{s}/"))),
        "{url} is not allowed by img-src {sources:?}"
    );
    assert!(
        !sources.contains(&endpoint),
        "only the public origin: {sources:?}"
    );
}
