//! Helpers for tests of code that uses this crate (enabled by the `testing` feature).

use base64::Engine as _;
use std::path::Path;

/// Writes a service-account key file with a freshly generated RSA key (the emulator checks no signature, but
/// the signer needs a real key).
#[expect(clippy::expect_used, reason = "a test helper fails loudly")]
pub fn write_service_account(dir: &Path) -> std::path::PathBuf {
    use aws_lc_rs::encoding::AsDer;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("test key");
    let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = key.as_der().expect("test key");
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let body: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("test key"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    );
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "agentd-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "agentd-test@agentd-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    let path = dir.join("service-account.json");
    std::fs::write(&path, serde_json::to_vec(&json).expect("test key")).expect("test key");
    path
}
