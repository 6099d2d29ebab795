//! The playground page: `GET /` and its static files under `/playground/` (plain HTML, CSS and ES modules from
//! `crates/agentd_http/assets/`, embedded in the binary: no build step, no CDN), their headers (a strict
//! Content-Security-Policy, revalidated caching with ETags), and `GET /playground/config.json`, which hands the
//! page the development token when — and only when — the server runs on its zero-config dev secret, the
//! browser is on the same machine, and the page was opened from the link the server printed (its key).

use crate::AppState;
use crate::openapi::errors::route_errors;
use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest as _;
use std::net::SocketAddr;
use std::sync::LazyLock;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod dev_token;

/// What the playground needs from the running server, beyond the API it calls.
#[derive(Default)]
pub struct Playground {
    /// The token `agentd serve` printed because it runs on the development secret; `None` otherwise.
    dev_token: Option<String>,
    /// With a dev token: the key of the printed playground link (`/#key=…`), without which the token is not
    /// handed out — a same-host proxy that adds no forwarding header makes every client look local.
    dev_key: Option<String>,
    /// The `img-src` sources of the object store's download URLs, found once by minting one.
    image_sources: tokio::sync::OnceCell<String>,
}

impl Playground {
    /// `dev_token`: `Some` only when the server signs with its zero-config development secret.
    #[expect(
        clippy::disallowed_methods,
        reason = "a secret, not an id: all random bits, not time-ordered"
    )]
    pub fn new(dev_token: Option<String>) -> Self {
        Self {
            dev_key: dev_token
                .as_ref()
                .map(|_| uuid::Uuid::new_v4().simple().to_string()),
            dev_token,
            image_sources: tokio::sync::OnceCell::new(),
        }
    }

    /// The key the printed playground link carries (`http://…/#key={key}`), when there is a dev token.
    pub fn dev_key(&self) -> Option<&str> {
        self.dev_key.as_deref()
    }
}

impl std::fmt::Debug for Playground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playground")
            .field("dev_token", &self.dev_token.as_ref().map(|_| "[redacted]"))
            .field("dev_key", &self.dev_key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// One page file: its name under `assets/`, its content type, its text compiled into the binary.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("../../assets/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("sse.js", "text/javascript; charset=utf-8"),
    asset!("stream.js", "text/javascript; charset=utf-8"),
    asset!("view.js", "text/javascript; charset=utf-8"),
];

/// One strong ETag per asset (a content hash), so browsers revalidate cheaply and never run a stale script
/// after an upgrade.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            format!(
                "\"{}\"",
                &hex::encode(sha2::Sha256::digest(a.body.as_bytes()))[..32]
            )
        })
        .collect()
});

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(index))
        .routes(routes!(config))
        .routes(routes!(asset))
}

/// The page's configuration.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct PlaygroundConfig<'a> {
    /// The token `agentd serve` printed, only when the server runs on its zero-config development secret;
    /// else null.
    #[schema(required = true)]
    dev_token: Option<&'a str>,
}

/// The playground page
///
/// A page for trying the server in a browser: chat, streaming, previews, images, history. No token.
#[utoipa::path(get, path = "/", tag = "playground", operation_id = "playground",
    params(("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer.")),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String,
            headers(("etag" = String), ("content-security-policy" = String))),
        (status = 304, description = "Unchanged since the ETag sent.")))]
async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    serve(&state, 0, &headers).await
}

route_errors!(AssetErrors = ["not_found"]);

/// A playground file
///
/// The page's CSS and ES modules. No token.
#[utoipa::path(get, path = "/playground/{file}", tag = "playground", operation_id = "playgroundFile",
    params(("file" = String, Path, description = "e.g. `app.js`."),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/html")),
            headers(("etag" = String))),
        (status = 304, description = "Unchanged since the ETag sent."),
        AssetErrors))]
async fn asset(State(state): State<AppState>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) => serve(&state, i, &headers).await,
        None => crate::ApiError::not_found(
            "not_found",
            format!("No playground file {file:?}; open the playground at /."),
        )
        .into_response(),
    }
}

/// The playground's configuration
///
/// The development token, only ever set when the server runs on its development secret, and only for a
/// browser on the server's own machine (a loopback peer, no proxy header) that opened the link the server
/// printed (its key, sent in `x-playground-key`); never cached. No token.
#[utoipa::path(get, path = "/playground/config.json", tag = "playground", operation_id = "playgroundConfig",
    responses((status = 200, description = "The configuration.", body = PlaygroundConfig<'static>)))]
async fn config(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    let config = PlaygroundConfig {
        dev_token: state.playground.dev_token_for(peer, &headers),
    };
    let mut res = Json(config).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn serve(state: &AppState, i: usize, headers: &HeaderMap) -> Response {
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time (a 304 costs one round trip): the files change with the binary.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Download URLs are credentials: no page URL travels to the object store, and nothing frames the page.
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let csp = content_security_policy(&image_sources(state).await);
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

/// No inline script or style, nothing from elsewhere but images: previews are `data:` URLs, an upload's
/// thumbnail is a `blob:` URL, and final images come from the object store's download URLs.
fn content_security_policy(image_sources: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{image_sources}; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The origin of the URLs the store hands out (` http://localhost:9000` for MinIO's public endpoint,
/// ` http://127.0.0.1:8080` for self-served `/v1/files/…` links under `PUBLIC_BASE_URL`, a bucket host for
/// virtual-hosted S3). Found by minting a URL exactly as attachments get theirs, so it cannot drift from them;
/// remembered once found, and retried on the next page load when the store cannot sign right now.
async fn image_sources(state: &AppState) -> String {
    let found = state
        .playground
        .image_sources
        .get_or_try_init(|| async {
            let tenant = agentd_storage::TenantId::parse("playground").map_err(|e| e.to_string())?;
            let key =
                agentd_storage::ObjectKey::upload(&tenant, "csp-probe", "png").map_err(|e| e.to_string())?;
            let url = state.urls.signed(&key, None).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(origin_of(&url.url).map(|o| format!(" {o}")).unwrap_or_default())
        })
        .await;
    match found {
        Ok(s) => s.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "playground: cannot mint a probe URL; images from the store may be blocked");
            String::new()
        }
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL, if it is one and safe to put in a CSP header.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let safe = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    safe.then(|| format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_download_urls() {
        assert_eq!(
            origin_of("http://localhost:9000/agentd/tenants/t/x.png?X-Amz-Signature=a").as_deref(),
            Some("http://localhost:9000")
        );
        assert_eq!(
            origin_of("https://bucket.s3.eu-west-1.amazonaws.com/k?sig").as_deref(),
            Some("https://bucket.s3.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            origin_of("http://[::1]:8080/v1/files/k").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(origin_of("http://u:p@h:1/x").as_deref(), Some("http://h:1"));
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("http://evil;script-src *"), None);
    }

    #[test]
    fn policy_allows_no_inline_code() {
        let csp = content_security_policy(" http://localhost:9000");
        assert!(csp.contains("script-src 'self';") && csp.contains("style-src 'self';"));
        assert!(csp.contains("img-src 'self' data: blob: http://localhost:9000;"));
        assert!(!csp.contains("unsafe"));
    }

    #[test]
    fn every_page_file_is_served() {
        let html = ASSETS[0].body;
        for a in &ASSETS[1..] {
            let referenced = html.contains(&format!("/playground/{}", a.name))
                || ASSETS.iter().any(|o| o.body.contains(&format!("'./{}'", a.name)));
            assert!(referenced, "{} is embedded but nothing loads it", a.name);
        }
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "inline code in index.html"
        );
    }
}
