//! `.env` for local runs, as `cp .env.example .env` users expect: read once at startup from the working
//! directory (where `config/` is read too), before the layered configuration (figment) looks at the
//! environment and before the runtime starts any thread. A variable already set in the environment wins; a
//! missing `.env` is fine; a malformed one stops startup naming its line (never its value: it may be a secret).

use std::path::Path;

/// Loads `path` into the process environment without overriding what is set. `Ok(false)` when there is none.
pub fn load(path: &Path) -> Result<bool, String> {
    match dotenvy::from_path(path) {
        Ok(()) => Ok(true),
        Err(e) if e.not_found() => Ok(false),
        Err(dotenvy::Error::LineParse(bad, _)) => {
            // `bad` is the line or only its value: find the line to name it by number and variable name.
            let content = std::fs::read_to_string(path).unwrap_or_default();
            let found = content
                .lines()
                .enumerate()
                .find(|(_, l)| !bad.trim().is_empty() && l.contains(bad.trim()));
            let at = found.map_or_else(String::new, |(i, l)| {
                let name = l.split('=').next().unwrap_or_default().trim();
                format!(" line {} ({name})", i + 1)
            });
            Err(format!(
                "{}{at} cannot be read: write NAME=value, quote values that have spaces or `#` in them \
                 ('…' or \"…\"), or remove the line",
                path.display()
            ))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
