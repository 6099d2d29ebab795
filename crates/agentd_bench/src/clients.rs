//! Benchmark clients: a bearer token per client (ten clients per tenant) and the prepared requests of one
//! phase, through agentd (`POST /v1/chat/stream`) or straight to the fake (`POST {fake}/responses`).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::turns::{self, Target, TurnRequest};

/// Clients that share one tenant.
pub const CLIENTS_PER_TENANT: usize = 10;

/// A bearer token for client `i`: tenant `bench-t{i/10}`, user `bench-u{i}`, valid 6 h, HS256 with `secret`.
pub fn token(secret: &str, i: usize) -> Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 6 * 3600;
    let claims = serde_json::json!({
        "sub": format!("bench-u{i}"),
        "tenant_id": format!("bench-t{}", i / CLIENTS_PER_TENANT),
        "exp": exp,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &key,
    )?)
}

/// Where the requests of a phase go.
pub enum Endpoint<'a> {
    /// agentd's base URL and its JWT secret.
    Agentd { base_url: &'a str, jwt_secret: &'a str },
    /// The fake's base URL (ends in `/v1`).
    Direct { fake_url: &'a str },
}

/// One request per client for `n` clients; direct requests carry the `image_generation` tool when `agent` is
/// `designer`, as agentd's would.
pub fn requests(to: &Endpoint<'_>, n: usize, agent: &str, message: &str) -> Result<Vec<TurnRequest>> {
    let (target, url, body) = match to {
        Endpoint::Agentd { base_url, .. } => (
            Target::Agentd,
            format!("{base_url}/v1/chat/stream"),
            turns::agentd_body(agent, message),
        ),
        Endpoint::Direct { fake_url } => (
            Target::Direct,
            format!("{fake_url}/responses"),
            turns::direct_body(message, agent == "designer"),
        ),
    };
    (0..n)
        .map(|i| {
            let bearer = match to {
                Endpoint::Agentd { jwt_secret, .. } => token(jwt_secret, i)?,
                Endpoint::Direct { .. } => "bench-key".to_owned(),
            };
            Ok(TurnRequest {
                target,
                url: url.clone(),
                bearer,
                body: body.clone(),
            })
        })
        .collect()
}
