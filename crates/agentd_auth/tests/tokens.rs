//! Token verification: every way a token can be wrong gets its own refusal; scopes and the dev secret.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_auth::{AuthError, AuthSettings, Authenticator, KeySource, Scope, ScopeSet, TenantId};
use chrono::Duration;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn auth(settings: AuthSettings) -> Authenticator {
    let dir = tempfile::tempdir().unwrap();
    Authenticator::new(&settings, &dir.path().join("dev-secret")).unwrap()
}

fn hs(settings_secret: &str) -> AuthSettings {
    AuthSettings {
        jwt_secret: Some(settings_secret.into()),
        ..Default::default()
    }
}

fn sign(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn minted_token_round_trips_with_scopes() {
    let a = auth(hs(SECRET));
    let t = TenantId::parse("acme").unwrap();
    let tok = a
        .mint(&t, "u1", Some(ScopeSet::of(&[Scope::Chat])), Duration::minutes(5))
        .unwrap();
    let p = a.verify_header(Some(&format!("Bearer {tok}"))).unwrap();
    assert_eq!((p.tenant_id.as_str(), p.user_id.as_str()), ("acme", "u1"));
    assert!(p.scopes.contains(Scope::Chat) && !p.scopes.contains(Scope::AgentsRead));
    let all = a
        .verify(&a.mint(&t, "u1", None, Duration::minutes(5)).unwrap())
        .unwrap();
    assert_eq!(all.scopes, ScopeSet::all(), "no scope claim means every scope");
}

#[test]
fn refusals_are_specific() {
    let a = auth(hs(SECRET));
    let ok = json!({"sub": "u", "tenant_id": "t", "exp": now() + 60});
    assert_eq!(a.verify_header(None), Err(AuthError::Missing));
    assert_eq!(a.verify_header(Some("Basic abc")), Err(AuthError::NotBearer));
    assert_eq!(a.verify("not.a.jwt"), Err(AuthError::Malformed));
    assert_eq!(
        a.verify(&sign(
            json!({"sub":"u","tenant_id":"t","exp": now() - 120}),
            SECRET
        )),
        Err(AuthError::Expired)
    );
    assert_eq!(
        a.verify(&sign(ok.clone(), "another-secret-another-secret-xx")),
        Err(AuthError::BadSignature)
    );
    assert!(matches!(
        a.verify(&sign(json!({"sub":"u","exp": now()+60}), SECRET)),
        Err(AuthError::Claim("tenant_id", _))
    ));
    assert!(matches!(
        a.verify(&sign(
            json!({"sub":"u","tenant_id":"../x","exp": now()+60}),
            SECRET
        )),
        Err(AuthError::Claim("tenant_id", _))
    ));
    assert!(matches!(
        a.verify(&sign(json!({"tenant_id":"t","exp": now()+60}), SECRET)),
        Err(AuthError::Claim("sub", _))
    ));
    for bad in ["u\u{0}", "a\nb", ""] {
        assert!(
            matches!(
                a.verify(&sign(
                    json!({"sub": bad, "tenant_id":"t","exp": now()+60}),
                    SECRET
                )),
                Err(AuthError::Claim("sub", _))
            ),
            "{bad:?}"
        );
    }
    assert!(a.verify(&sign(ok, SECRET)).is_ok());
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let a = auth(AuthSettings {
        jwt_audience: Some("agentd".into()),
        jwt_issuer: Some("https://idp".into()),
        ..hs(SECRET)
    });
    let base = |aud: &str, iss: &str| json!({"sub":"u","tenant_id":"t","exp": now()+60,"aud":aud,"iss":iss});
    assert!(a.verify(&sign(base("agentd", "https://idp"), SECRET)).is_ok());
    assert_eq!(
        a.verify(&sign(base("other", "https://idp"), SECRET)),
        Err(AuthError::Audience("agentd".into()))
    );
    assert_eq!(
        a.verify(&sign(base("agentd", "https://evil"), SECRET)),
        Err(AuthError::Issuer("https://idp".into()))
    );
}

#[test]
fn aud_may_be_an_array_and_is_required_when_configured() {
    let a = auth(AuthSettings {
        jwt_audience: Some("agentd".into()),
        ..hs(SECRET)
    });
    let with = |aud: serde_json::Value| json!({"sub":"u","tenant_id":"t","exp": now()+60,"aud":aud});
    assert!(a.verify(&sign(with(json!(["other", "agentd"])), SECRET)).is_ok());
    let refused = Err(AuthError::Audience("agentd".into()));
    assert_eq!(a.verify(&sign(with(json!(["other", "more"])), SECRET)), refused);
    assert_eq!(a.verify(&sign(with(json!([])), SECRET)), refused);
    assert_eq!(
        a.verify(&sign(json!({"sub":"u","tenant_id":"t","exp": now()+60}), SECRET)),
        refused,
        "a configured audience is required"
    );
    assert!(AuthError::Audience("agentd".into()).to_string().contains("`aud`"));
    // Without a configured audience, any aud (string or array) is ignored.
    let open = auth(hs(SECRET));
    assert!(open.verify(&sign(with(json!(["x", "y"])), SECRET)).is_ok());
}

#[test]
fn tenant_ids_the_object_store_refuses_are_refused() {
    for bad in [".", "..", "a/b", "a\u{7}b", "", &"x".repeat(65), "ü"] {
        assert!(TenantId::parse(bad).is_err(), "{bad:?}");
    }
    for good in ["a", "a.b", "...", "A_b-9", &"x".repeat(64)] {
        assert!(TenantId::parse(good).is_ok(), "{good:?}");
    }
}

#[test]
fn a_token_signed_with_an_unconfigured_algorithm_is_refused() {
    let a = auth(hs(SECRET));
    let header = Header::new(Algorithm::HS384);
    let claims = json!({"sub":"u","tenant_id":"t","exp": now()+60});
    let tok = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    assert!(matches!(a.verify(&tok), Err(AuthError::Algorithm(_))));
}

#[test]
fn eddsa_public_key_verifies() {
    // An Ed25519 key pair made once for this test with `openssl genpkey -algorithm ed25519`.
    let private = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJqFxX7UQKrgx2cfTsxIcgGpYFGfZf0WICMWMRiND102
-----END PRIVATE KEY-----
";
    let public = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEACoIIqykUvBO+NdcdkwIUv/t/g1BuzQAlrt07kM177OM=
-----END PUBLIC KEY-----
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pub.pem");
    std::fs::write(&path, public).unwrap();
    let a = auth(AuthSettings {
        jwt_public_key_path: Some(path),
        ..Default::default()
    });
    assert_eq!(a.key_source, KeySource::None);
    let claims = json!({"sub":"u","tenant_id":"t","exp": now()+60});
    let key = EncodingKey::from_ed_pem(private.as_bytes()).unwrap();
    let tok = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
    assert_eq!(a.verify(&tok).unwrap().tenant_id.as_str(), "t");
    assert!(
        matches!(a.verify(&sign(claims, SECRET)), Err(AuthError::Algorithm(_))),
        "no HS256 key configured"
    );
}

#[test]
fn dev_secret_is_generated_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/dev-jwt-secret");
    let a = Authenticator::new(&AuthSettings::default(), &path).unwrap();
    assert_eq!(a.key_source, KeySource::DevFile(path.clone()));
    let t = TenantId::parse("demo").unwrap();
    let tok = a.mint(&t, "dev", None, Duration::hours(1)).unwrap();
    let again = Authenticator::new(&AuthSettings::default(), &path).unwrap();
    assert!(
        again.verify(&tok).is_ok(),
        "a restart keeps accepting earlier dev tokens"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn short_secret_is_refused_and_debug_redacts() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Authenticator::new(&hs("short"), &dir.path().join("x")).is_err());
    let placeholder = hs("change-me-change-me-change-me-change-me");
    let e = Authenticator::new(&placeholder, &dir.path().join("x")).unwrap_err();
    assert!(
        e.to_string().starts_with("AUTH_JWT_SECRET is a placeholder"),
        "{e}"
    );
    assert!(!format!("{:?}", hs(SECRET)).contains(SECRET));
}

#[test]
fn rs256_public_key_verifies() {
    // An RSA key pair made once for this test with `openssl genpkey -algorithm RSA`.
    let private = "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCzP4UFmKvPRXcL\nWytI4m5Ado/L+RLKtTXqirXxDnAAZsppTS2Gks3lFHLt8nyS/lpZiSjoAbyQh8IL\nroA5ImOlXYUNq1sfzKI6MEROqYwxUAetKLPR7j3mZ8B/5RnUf8KQg/TAgd0keNLk\nic0WYx6VgkrN5x/y7PO0198Rtf/dB0JlqqpuonpZ4t/pzKvYqqi8kSlRuEF9bA5a\ndmUOuCeWoyZK/XKXnOHmqjRV6y9i37wWpzSh8siSnPBl8LawYEmI/EUZq2O4d073\nX4wioSZ0qEWlAG/8Jk7rKyOXHfkuZWXu2s61QQetMlInC8C38liTzMMQvaPB/G92\nulmFhntfAgMBAAECggEAGJh2B5yOsV7rb316ZQKHn696b8H6Qs0MBuYzAk65g59B\n1aJ8xWMjfsmIM6pQTwM5ITa24Y72HDGPU3cFqnv+MaoGyydg1kOIBx//CiQtqR6S\nzxSEssupZrzZ0d19O9wECzxwEHJBW/MloleznTIgojdB+HA8bA2jgIRr3CGdvZWP\nSkYmDhuNxcG2IxjS7EHEYrCFrxexQb8hQ3nrJpd5UyM0t3AAYXgtySgbx5KKQaW6\n34eeesamEjZcBbSKLd2VcD/31II0wFpLQ4ECYi+3O1HgP79Y2aHbwBhjs4xOna4M\nRGUwvQvL5Bj6A+mMoL4MuIlKqAlXG6Ks7HUmuWcQkQKBgQDZ8YK55JIj9s4QfdO6\nQf5bFgUJOmX4x/3AkW/nFBQvHrrrPmvxCHHJNERLHg7Q14PoxMl6QdtxeHNeswAc\nUoT+df3QCdG1eG5KUaSQO23qYaLRtAvsS7vHPueZ8cs+W4szQSS6Q8rkDBf86WVS\nlVIGYz0M3nn5mvRWWkemiEW1SwKBgQDSjEFv7ydwBwz0yUfubSXI8L8DziOumdNC\nYYV1ey6+Q1wZHcfFRTZkD2U4WS2Go/SC1ZmwqofIQ9iBbsDbR8DlJVM2cEJ7S89f\nY5Uzfq7gb5q/3ZvPq3sFVJRahi3oLrU/m/Z/kdepX5CL35Yhn/p73l2ORBDw0b+t\n8hYIJhAJvQKBgEGeaZG2tBmH8bsdZ2YpAIBEPPfuUU16SXh1UY/th7Y4NmclwDIu\nLLQ7vGQxhJx0hw7KUS8yLPQZJANbOalNXyWOOQEuM6nDvNE7i6SxgAKVqwQghYZ7\ntunikrDTEDKSNXMVJg2+45ON4JsRWqRmuO+baYI6adcxRGfLfs8xMGvJAoGABoWN\nqVfxEslFH3f0oHAFEZpTcFy8QjZFkvLOXXs5UW9otOZ1P6kLLEJF0l8AyADgHAVd\nw1kk55Eiba/ujVxFn1NupmsHxCXvAHdnMbck15LdakAFCYO4Rcv+5GbvmReJSbUd\nB4qO8ZIiOhLs5ZG9AoU6xKNbGvqEQ3ESOaJkMMkCgYBMksO05nEt3JQSxN8undXc\nVmrUZFEmd9betmGE1xEBE7gFt48d02br/qQkzIKlEKHYRM/vYoWDBjeuaenOwfoI\nz4u1902GI+u68nUp66x9kClo0Hlcv7Dq52YNwfIjCDsFaY3XFDyaWLuVxtKxYVxk\nIp+Xzh6hGpTI46Y4gJlT9w==\n-----END PRIVATE KEY-----\n";
    let public = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsz+FBZirz0V3C1srSOJu\nQHaPy/kSyrU16oq18Q5wAGbKaU0thpLN5RRy7fJ8kv5aWYko6AG8kIfCC66AOSJj\npV2FDatbH8yiOjBETqmMMVAHrSiz0e495mfAf+UZ1H/CkIP0wIHdJHjS5InNFmMe\nlYJKzecf8uzztNffEbX/3QdCZaqqbqJ6WeLf6cyr2KqovJEpUbhBfWwOWnZlDrgn\nlqMmSv1yl5zh5qo0VesvYt+8Fqc0ofLIkpzwZfC2sGBJiPxFGatjuHdO91+MIqEm\ndKhFpQBv/CZO6ysjlx35LmVl7trOtUEHrTJSJwvAt/JYk8zDEL2jwfxvdrpZhYZ7\nXwIDAQAB\n-----END PUBLIC KEY-----\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rsa.pub");
    std::fs::write(&path, public).unwrap();
    let a = auth(AuthSettings {
        jwt_public_key_path: Some(path),
        jwt_audience: Some("agentd".into()),
        ..Default::default()
    });
    let claims = json!({"sub":"u","tenant_id":"t","exp": now()+60, "aud": "agentd"});
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    let tok = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    assert_eq!(a.verify(&tok).unwrap().user_id, "u");
    let wrong_aud = json!({"sub":"u","tenant_id":"t","exp": now()+60, "aud": "other"});
    let tok = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &wrong_aud, &key).unwrap();
    assert_eq!(a.verify(&tok), Err(AuthError::Audience("agentd".into())));
}

#[test]
fn a_bad_public_key_file_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.pem");
    std::fs::write(&path, "not a key").unwrap();
    let err = Authenticator::new(
        &AuthSettings {
            jwt_public_key_path: Some(path),
            ..Default::default()
        },
        &dir.path().join("x"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("AUTH_JWT_PUBLIC_KEY_PATH=") && err.contains("PEM"),
        "{err}"
    );
}
