//! The rule for a configured HS256 secret, whatever `APP_ENV` says: at least 32 bytes, and not a placeholder
//! (anything containing `change-me`/`changeme` in any case or spelling with `_`/spaces, or the example value
//! of `.env.example`). The zero-config development secret under `var/` is random and never needs one.

use crate::ConfigError;

/// `.env.example`, compiled in so that its example secret (if it ever ships one) can never be used.
const ENV_EXAMPLE: &str = include_str!("../../../.env.example");

/// The `AUTH_JWT_SECRET` value of an env file, if it has one.
fn example_secret(env_file: &str) -> Option<&str> {
    env_file
        .lines()
        .find_map(|l| l.trim().strip_prefix("AUTH_JWT_SECRET="))
        .map(|v| v.split('#').next().unwrap_or_default().trim())
        .filter(|v| !v.is_empty())
}

/// Refuses a secret that is short or a placeholder, with an error that names `AUTH_JWT_SECRET`.
pub fn check_secret(secret: &str) -> Result<(), ConfigError> {
    let folded: String = secret
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' ' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    if folded.contains("changeme") {
        return Err(ConfigError::PlaceholderSecret("it contains `change-me`"));
    }
    if example_secret(ENV_EXAMPLE) == Some(secret.trim()) {
        return Err(ConfigError::PlaceholderSecret(
            "the example value of .env.example",
        ));
    }
    if secret.len() < 32 {
        return Err(ConfigError::WeakSecret(secret.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_placeholder_secrets_are_refused() {
        for s in [
            "change-me-change-me-change-me-change-me",
            "CHANGEME0123456789abcdef0123456789abcdef",
            "please_Change_Me_before_production_0123456789",
        ] {
            let e = check_secret(s).unwrap_err().to_string();
            assert!(e.starts_with("AUTH_JWT_SECRET is a placeholder"), "{s}: {e}");
        }
        let e = check_secret("0123456789abcdef0123456789abcde")
            .unwrap_err()
            .to_string();
        assert!(e.contains("AUTH_JWT_SECRET is too short (31 bytes)"), "{e}");
        assert!(check_secret("0123456789abcdef0123456789abcdef").is_ok());
    }

    #[test]
    fn the_example_value_is_read_from_an_env_file() {
        let file = "A=1\nAUTH_JWT_SECRET=s3cr3t-example-value   # a comment\nB=2\n";
        assert_eq!(example_secret(file), Some("s3cr3t-example-value"));
        assert_eq!(example_secret("AUTH_JWT_SECRET=    # unset\n"), None);
    }
}
