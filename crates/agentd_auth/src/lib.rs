//! Authentication and tenancy primitives: bearer JWT verification (HS256 with a shared secret, EdDSA or RS256
//! with a public key), the [`Principal`] a verified token yields, scopes, and minting tokens for development.
//!
//! The HTTP crate turns [`AuthError`]s into `401`/`403` answers; this crate knows nothing of HTTP.

mod keys;
mod principal;
mod secret_file;
mod weak;

pub use keys::{AuthSettings, Authenticator, KeySource};
pub use principal::{Principal, Scope, ScopeSet, TenantId};
pub use secret_file::{MIN_SECRET_CHARS, read_or_create_secret};
pub use weak::check_secret;

/// Why a bearer token was refused. Every message says what to do about it and never echoes the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <JWT>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <JWT>`")]
    NotBearer,
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the bearer token has expired: mint a new one")]
    Expired,
    #[error("the bearer token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the bearer token's signature does not verify")]
    BadSignature,
    #[error("the bearer token is signed with {0}, which this server does not accept")]
    Algorithm(String),
    #[error("the bearer token's audience (`aud`) must be {0:?} or an array that contains it")]
    Audience(String),
    #[error("the bearer token's issuer (`iss`) must be {0:?}")]
    Issuer(String),
    #[error("the bearer token lacks a valid `{0}` claim: {1}")]
    Claim(&'static str, &'static str),
}

/// Configuration problems found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("AUTH_JWT_PUBLIC_KEY_PATH={path}: {why}")]
    PublicKey { path: String, why: String },
    #[error(
        "AUTH_JWT_SECRET is too short ({0} bytes): use at least 32 random bytes, e.g. `openssl rand -base64 48`, \
         or unset it (with no AUTH_JWT_PUBLIC_KEY_PATH) for a development secret made in var/"
    )]
    WeakSecret(usize),
    #[error(
        "AUTH_JWT_SECRET is a placeholder ({0}): set a random secret of at least 32 bytes, e.g. \
         `openssl rand -base64 48`, or unset it (with no AUTH_JWT_PUBLIC_KEY_PATH) for a development secret \
         made in var/"
    )]
    PlaceholderSecret(&'static str),
    #[error("cannot create the development signing secret at {path}: {why}")]
    DevSecret { path: String, why: String },
    #[error("minting tokens needs an HS256 secret (AUTH_JWT_SECRET); this server only has a public key")]
    NoSigningKey,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}
