//! Verification and signing keys: HS256 from `AUTH_JWT_SECRET` (or a development secret generated once under
//! `var/`), EdDSA or RS256 from the PEM at `AUTH_JWT_PUBLIC_KEY_PATH`; issuer and audience when configured
//! (then required; `aud` may be a string or an array, RFC 7519 §4.1.3).

use crate::{AuthError, ConfigError, Principal, ScopeSet, TenantId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// `AUTH_JWT_*` settings.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `AUTH_JWT_SECRET` (HS256).
    pub jwt_secret: Option<String>,
    /// `AUTH_JWT_PUBLIC_KEY_PATH` (EdDSA or RS256 public key, PEM).
    pub jwt_public_key_path: Option<PathBuf>,
    /// `AUTH_JWT_ISSUER`, checked when set.
    pub jwt_issuer: Option<String>,
    /// `AUTH_JWT_AUDIENCE`, checked when set.
    pub jwt_audience: Option<String>,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "[redacted]"))
            .field("jwt_public_key_path", &self.jwt_public_key_path)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .finish()
    }
}

/// Where the HS256 secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `AUTH_JWT_SECRET`.
    Configured,
    /// Generated once for development at this path.
    DevFile(PathBuf),
    /// No HS256 secret: only the public key verifies.
    None,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    tenant_id: Option<serde_json::Value>,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// A string or an array of strings; `jsonwebtoken` checks it against the configured audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
}

/// Verifies bearer tokens and, with an HS256 secret, mints them.
pub struct Authenticator {
    hs256: Option<(DecodingKey, EncodingKey)>,
    public: Option<(DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
    pub key_source: KeySource,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("key_source", &self.key_source)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the verifier. With neither a secret nor a public key, a development secret is generated once at
    /// `dev_secret_path` and reused on later starts.
    pub fn new(settings: &AuthSettings, dev_secret_path: &Path) -> Result<Self, ConfigError> {
        let public = match &settings.jwt_public_key_path {
            Some(path) => Some(load_public_key(path)?),
            None => None,
        };
        let (secret, key_source) = match (&settings.jwt_secret, &public) {
            (Some(s), _) => {
                crate::weak::check_secret(s)?;
                (Some(s.clone().into_bytes()), KeySource::Configured)
            }
            (None, Some(_)) => (None, KeySource::None),
            (None, None) => (
                Some(dev_secret(dev_secret_path)?),
                KeySource::DevFile(dev_secret_path.to_owned()),
            ),
        };
        Ok(Self {
            hs256: secret.map(|s| (DecodingKey::from_secret(&s), EncodingKey::from_secret(&s))),
            public,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            key_source,
        })
    }

    /// Verifies an `Authorization` header value.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        self.verify(token.trim())
    }

    /// Verifies a compact JWT and returns the caller.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().map(|(d, _)| d),
            alg => self.public.as_ref().filter(|(_, a)| *a == alg).map(|(d, _)| d),
        }
        .ok_or_else(|| AuthError::Algorithm(format!("{:?}", header.alg)))?;
        let mut v = Validation::new(header.alg);
        v.leeway = 30;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(a) => {
                v.set_audience(&[a]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAudience => AuthError::Audience(self.audience.clone().unwrap_or_default()),
            ErrorKind::InvalidIssuer => AuthError::Issuer(self.issuer.clone().unwrap_or_default()),
            ErrorKind::MissingRequiredClaim(c) if c == "exp" => {
                AuthError::Claim("exp", "an expiry time is required")
            }
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                AuthError::Audience(self.audience.clone().unwrap_or_default())
            }
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
                AuthError::Issuer(self.issuer.clone().unwrap_or_default())
            }
            ErrorKind::MissingRequiredClaim(_) => AuthError::Claim("sub", "the user id is required"),
            ErrorKind::Json(_) => AuthError::Claim("sub", "sub must be a string and exp a number"),
            _ => AuthError::Malformed,
        })?;
        let c = data.claims;
        let tenant_id = c
            .tenant_id
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(|t| TenantId::parse(t).ok())
            .ok_or(AuthError::Claim("tenant_id", TenantId::RULE))?;
        // No control characters: PostgreSQL's text cannot hold U+0000 (a 500 at the first turn), and a user id
        // is written to logs.
        let sub = c
            .sub
            .filter(|s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control));
        let user_id = sub.ok_or(AuthError::Claim(
            "sub",
            "the user id, 1 to 255 characters, none of them control characters",
        ))?;
        let scopes = c.scope.as_deref().map_or_else(ScopeSet::all, ScopeSet::parse);
        Ok(Principal {
            tenant_id,
            user_id,
            scopes,
        })
    }

    /// Mints an HS256 token (the `token` subcommand and the startup banner).
    pub fn mint(
        &self,
        tenant: &TenantId,
        user: &str,
        scopes: Option<ScopeSet>,
        ttl: chrono::Duration,
    ) -> Result<String, ConfigError> {
        let (_, enc) = self.hs256.as_ref().ok_or(ConfigError::NoSigningKey)?;
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: Some(user.to_owned()),
            tenant_id: Some(tenant.as_str().into()),
            exp: now + ttl.num_seconds(),
            iat: Some(now),
            scope: scopes.map(ScopeSet::to_claim),
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, enc)
            .map_err(|e| ConfigError::Sign(e.to_string()))
    }
}

fn load_public_key(path: &Path) -> Result<(DecodingKey, Algorithm), ConfigError> {
    let err = |why: String| ConfigError::PublicKey {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read the file ({e})")))?;
    if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        return Ok((k, Algorithm::EdDSA));
    }
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((k, Algorithm::RS256));
    }
    Err(err(
        "not an Ed25519 or RSA public key in PEM form (-----BEGIN PUBLIC KEY-----)".into(),
    ))
}

/// Reads the development secret, creating it (32 random bytes, mode 0600) on first use.
fn dev_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    crate::read_or_create_secret(path)
        .map(String::into_bytes)
        .map_err(|e| ConfigError::DevSecret {
            path: path.display().to_string(),
            why: e.to_string(),
        })
}
