//! The playground page (`GET /`) in a real headless Chromium, driven over WebDriver (fantoccini + the
//! distribution's chromedriver), against the real `agentd` binary on its zero-config defaults (SQLite, local
//! disk, dev secret, offline model) in a temp dir. `scripts/test-services.sh start` installs Chromium and
//! chromedriver and exports where they are; without them this test fails saying so, it never skips.
//! A screenshot is left at `target/playground.png`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Every wait in this file gives up after this long (the whole test takes a few seconds).
const WAIT: Duration = Duration::from_secs(60);

/// The binary on its zero-config defaults, in a temp dir with the shipped agents; killed on drop.
struct Server {
    child: Child,
    base: String,
    /// The playground link the server printed (with its key).
    page: String,
    token: String,
    _lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agents");
        std::fs::create_dir_all(dir.path().join("config/agents")).unwrap();
        for f in std::fs::read_dir(agents).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.path().join("config/agents").join(f.file_name().unwrap())).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentd"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("METRICS_ADDR", "")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut token, mut base, mut page) = (None, None, None);
        while token.is_none() || base.is_none() || page.is_none() {
            let line = rx
                .recv_timeout(WAIT)
                .expect("agentd printed no dev token banner within 60 s");
            if let Some(t) = line.trim().strip_prefix("export AGENTD_TOKEN=") {
                token = Some(t.to_owned());
            }
            if line.trim_start().starts_with("curl ")
                && let Some(i) = line.find("http://")
            {
                base = Some(line[i..].trim().trim_end_matches("/v1/agents").to_owned());
            }
            if let Some(p) = line.trim().strip_prefix("playground: ") {
                page = Some(p.to_owned());
            }
        }
        Server {
            child,
            base: base.unwrap(),
            page: page.unwrap(),
            token: token.unwrap(),
            _lines: rx,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a tool is: `AGENTD_TEST_<VAR>` (set by scripts/test-services.sh), else the first name on PATH.
fn tool(var: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{var}={} does not exist: run `eval \"$(scripts/test-services.sh start)\"` again",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for n in names {
            if dir.join(n).is_file() {
                return dir.join(n);
            }
        }
    }
    panic!(
        "{} not found (and {var} is unset): this test drives a real Chromium. Run `eval \"$(scripts/test-services.sh \
         start)\"` (it installs chromium and chromium-driver with apt-get when root) or `apt-get install chromium \
         chromium-driver`.",
        names.join(" / ")
    );
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(chromedriver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = reqwest::get(format!("{url}/status")).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromedriver exited during startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {url} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ];
    let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("chromedriver did not open a Chromium session: {e}"))
}

/// Evaluates `script` (a function body) until it returns something other than null/false, or fails after
/// [`WAIT`] with `what` and what the page shows.
async fn until(c: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        if !v.is_null() && v != Value::Bool(false) {
            return v;
        }
        if Instant::now() > deadline {
            let page = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            panic!("timed out after 60 s waiting for {what}; the page shows:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const LOADED_FINALS: &str = "const imgs = [...document.querySelectorAll('#log img.final')]; \
     return imgs.length && imgs.every((i) => i.complete && i.naturalWidth > 0) \
       ? imgs.map((i) => ({ src: i.currentSrc, id: i.dataset.objectId, w: i.naturalWidth })) : null;";

#[tokio::test]
async fn the_playground_chats_streams_images_and_reopens_them_in_chromium() {
    let chromium = tool("AGENTD_TEST_CHROMIUM", &["chromium", "chromium-browser"]);
    let chromedriver = tool("AGENTD_TEST_CHROMEDRIVER", &["chromedriver"]);
    let server = Server::start();
    let driver = Driver::start(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, &chromium, profile.path()).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        walk_through(&c, &server).await;
        resumes_dropped_streams(&c).await;
    })
    .catch_unwind()
    .await;
    let _ = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn walk_through(c: &Client, server: &Server) {
    // The page without the printed link's key: no token is handed out (a same-host proxy would look local).
    c.goto(&format!("{}/", server.base)).await.unwrap();
    until(
        c,
        "the page to start",
        "return document.body.dataset.ready === 'true'",
    )
    .await;
    let bare = c
        .execute("return document.getElementById('token').value", vec![])
        .await
        .unwrap();
    assert_eq!(bare, "", "no dev token without the link's key");
    // The printed link (from another page: a change of fragment alone does not load the page again): the
    // key is taken out of the address bar and the token prefilled.
    c.goto("about:blank").await.unwrap();
    c.goto(&server.page).await.unwrap();
    until(
        c,
        "the page to start",
        "return document.body.dataset.ready === 'true'",
    )
    .await;
    let prefilled = c
        .execute("return document.getElementById('token').value", vec![])
        .await
        .unwrap();
    assert_eq!(
        prefilled, server.token,
        "the token field is prefilled with the dev token"
    );
    let shown = c.current_url().await.unwrap();
    assert!(
        !shown.as_str().contains("key="),
        "the key left the address bar: {shown}"
    );
    until(
        c,
        "the agents",
        "return document.querySelectorAll('#agent option').length === 2",
    )
    .await;

    // Record what the log goes through, so previews are seen however fast the offline model is.
    c.execute(
        "window.seen = { previews: 0, previewSrcs: 0 };
         new MutationObserver((rs) => { for (const r of rs) {
           if (r.type === 'childList') for (const n of r.addedNodes) {
             if (n.nodeType === 1 && n.matches('img.preview')) window.seen.previews += 1; }
           if (r.type === 'attributes' && r.target.matches('img.preview')) window.seen.previewSrcs += 1; } })
         .observe(document.getElementById('log'), { subtree: true, childList: true, attributes: true,
                                                   attributeFilter: ['src'] });",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#agent"))
        .await
        .unwrap()
        .select_by_value("designer")
        .await
        .unwrap();
    let message = c.find(Locator::Css("#message")).await.unwrap();
    message
        .send_keys("Draw a gray tabby cat hugging an otter with an orange scarf\u{e007}")
        .await
        .unwrap();
    let finals = until(c, "the final image to load", LOADED_FINALS).await;
    let final_img = &finals[0];
    let (src, object_id) = (
        final_img["src"].as_str().unwrap(),
        final_img["id"].as_str().unwrap(),
    );
    let seen = c.execute("return window.seen", vec![]).await.unwrap();
    assert_eq!(
        seen["previews"], 1,
        "one preview element, replaced in place: {seen}"
    );
    assert!(
        seen["previewSrcs"].as_u64().unwrap() >= 1,
        "the second preview reused it: {seen}"
    );
    let leftovers = c
        .execute(
            "return document.querySelectorAll('#log img.preview').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(leftovers, 0, "the final image took the preview's place");
    until(
        c,
        "the turn to finish",
        "return !document.querySelector('#log .streaming')",
    )
    .await;
    let text = c
        .find(Locator::Css("#log .msg.assistant .text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.is_empty(), "the streamed text is shown");

    // The image is the attachment the server stored, from its self-served download URL.
    let list = server.get("/v1/conversations").await;
    let conv_id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let conv = server.get(&format!("/v1/conversations/{conv_id}")).await;
    let stored = &conv["messages"][1]["attachments"][0];
    assert_eq!(stored["object_id"], object_id);
    let key = format!(
        "tenants/demo/conversations/{}/{}.png",
        conv_id.replace('-', ""),
        object_id.replace('-', "")
    );
    let file = format!("{}/v1/files/{key}?", server.base);
    assert!(src.starts_with(&file), "{src} is not the attachment URL {file}…");
    let png = reqwest::get(src).await.unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    let png = png.bytes().await.unwrap();

    save_screenshot(c, "playground.png").await;

    // Reload: the conversation is in the list and reopens with the same image, from a freshly minted URL.
    c.refresh().await.unwrap();
    until(
        c,
        "the page to start again",
        "return document.body.dataset.ready === 'true'",
    )
    .await;
    let item = format!("#conversations button[data-id='{conv_id}']");
    until(
        c,
        "the conversation in the list",
        &format!("return !!document.querySelector(\"{item}\")"),
    )
    .await;
    c.find(Locator::Css(&item)).await.unwrap().click().await.unwrap();
    let reopened = until(c, "the reopened image to load", LOADED_FINALS).await;
    assert_eq!(reopened[0]["id"], object_id);
    let title = c
        .find(Locator::Css("#chat-title"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(title, conv["title"].as_str().unwrap());

    // An uploaded image goes with the next message as an input for the edit.
    let upload = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
    std::fs::write(upload.path(), &png).unwrap();
    let path = upload.path().to_str().unwrap();
    c.find(Locator::Css("#file"))
        .await
        .unwrap()
        .send_keys(path)
        .await
        .unwrap();
    until(
        c,
        "the upload",
        "return document.getElementById('pending').textContent.includes('attached')",
    )
    .await;
    let message = c.find(Locator::Css("#message")).await.unwrap();
    message
        .send_keys("now make it a realistic photo\u{e007}")
        .await
        .unwrap();
    until(
        c,
        "the edited image",
        "const f = document.querySelectorAll('#log img.final'); \
         return f.length === 2 && [...f].every((i) => i.complete && i.naturalWidth > 0);",
    )
    .await;
    until(
        c,
        "the edit to finish",
        "return !document.querySelector('#log .streaming')",
    )
    .await;
    let conv = server.get(&format!("/v1/conversations/{conv_id}")).await;
    let messages = conv["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{conv}");
    assert_eq!(
        messages[2]["attachments"].as_array().unwrap().len(),
        1,
        "the upload went with the message"
    );

    // A narrow screen: one column, nothing wider than the window.
    c.set_window_size(400, 800).await.unwrap();
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, true, "the page scrolls sideways at 400 px");
    save_screenshot(c, "playground-narrow.png").await;
    c.set_window_size(1280, 900).await.unwrap();

    // A bad token: the server's error envelope is shown.
    let token = c.find(Locator::Css("#token")).await.unwrap();
    token.clear().await.unwrap();
    token.send_keys("not-a-token").await.unwrap();
    c.find(Locator::Css("#save-token"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = until(
        c,
        "the error banner",
        "const e = document.getElementById('error'); return e.hidden ? null : e.textContent;",
    )
    .await;
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("(unauthenticated, HTTP 401)"), "{shown}");
    let res = reqwest::Client::new()
        .get(format!("{}/v1/agents", server.base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    let envelope: Value = res.json().await.unwrap();
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(
        shown.starts_with(message),
        "the banner shows the envelope's message {message:?}: {shown}"
    );
}

/// Saves a PNG of the page under the workspace's `target/` for people to look at.
async fn save_screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join(name), png).unwrap();
}

/// The page's stream follower, in the browser with scripted responses (the resumable route is not needed): a
/// stream that drops after event 2 resumes with `Last-Event-ID: 2`, skips the replayed duplicate and ends at
/// the terminal event; a server without the route (404 `not_found`) ends the follow quietly with a notice.
/// Events arrive split at awkward places (CRLF across chunks, a comment, a multi-line `data:`).
async fn resumes_dropped_streams(c: &Client) {
    let script = r#"
      const done = arguments[arguments.length - 1];
      (async () => {
        const { followRun } = await import('/playground/stream.js');
        const { ApiError } = await import('/playground/api.js');
        // One chunk per read; then the connection drops (an error) or the server ends the stream.
        const body = (chunks, drop) => { let i = 0; return new Response(new ReadableStream({
          pull(ctl) {
            if (i < chunks.length) ctl.enqueue(new TextEncoder().encode(chunks[i++]));
            else if (drop) ctl.error(new TypeError('network error')); else ctl.close();
          } })); };
        const first = ['retry: 5\r\nid: 1\r\nevent: run.started\r\ndata: {"run_id":"r1","conversation_id":"c1"}\r',
                       '\n\r\n: keep-alive\n\nid: 2\nevent: message.delta\ndata: {"delta":', '"Hel"}\n\n'];
        const events = [], notices = [], resumed = [];
        const outcome = await followRun({
          open: async () => body(first, true),
          resume: async (run, last) => {
            resumed.push([run, last]);
            return body(['id: 2\nevent: message.delta\ndata: {"delta":"Hel"}\n\n',
                         'id: 4\nevent: message.delta\ndata: {"delta":\ndata: "lo"}\n\n',
                         'id: 5\nevent: run.completed\ndata: {"message":{"content":"Hello"}}\n\n'], false);
          },
          onEvent: (type, data) => events.push([type, data.delta ?? null]),
          onNotice: (t) => notices.push(t),
        });
        const gone = await followRun({
          open: async () => body(['retry: 5\nid: 1\nevent: run.started\ndata: {"run_id":"r2"}\n\n'], true),
          resume: async () => { throw new ApiError(404, 'not_found', 'No route'); },
          onEvent: () => {}, onNotice: (t) => notices.push(t),
        });
        return { outcome, events, resumed, gone, notices };
      })().then(done, (e) => done({ error: String(e && e.stack || e) }));
    "#;
    let r = c.execute_async(script, vec![]).await.unwrap();
    assert!(r["error"].is_null(), "{}", r["error"]);
    assert_eq!(r["outcome"], "done");
    assert_eq!(r["resumed"], json!([["r1", 2]]), "resumed after the last id seen");
    assert_eq!(
        r["events"],
        json!([
            ["run.started", null],
            ["message.delta", "Hel"],
            ["message.delta", "lo"],
            ["run.completed", null]
        ]),
        "each event once, in order"
    );
    assert_eq!(r["gone"], "unresumable");
    let notices = r["notices"].to_string();
    assert!(notices.contains("cannot resume streams"), "{notices}");
}
