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
            // `bad` is the line, only its value, or — when the parser took a quote mark for an opening one — that
            // line and every one after it: its first line finds the line to name by number and variable name.
            let content = std::fs::read_to_string(path).unwrap_or_default();
            let first = bad
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default();
            let found = content
                .lines()
                .enumerate()
                .find(|(_, l)| !first.is_empty() && l.contains(first));
            let at = found.map_or_else(String::new, |(i, l)| {
                let name = l.split('=').next().unwrap_or_default().trim();
                format!(" line {} ({name})", i + 1)
            });
            let quirk = if found.is_some_and(|(_, l)| quote_in_comment(l)) {
                "; a quote mark in a comment after an even number of spaces is taken for an opening one (a quirk \
                 of the .env parser): put the comment on a line of its own"
            } else {
                ""
            };
            Err(format!(
                "{}{at} cannot be read: write NAME=value, quote values that have spaces or `#` in them \
                 ('…' or \"…\"), or remove the line{quirk}",
                path.display()
            ))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Whether `line` has a comment after its value (`#` after a space or tab) with a quote mark in it.
fn quote_in_comment(line: &str) -> bool {
    let comment = line.find(" #").or_else(|| line.find("\t#"));
    comment.is_some_and(|at| line[at..].contains(['\'', '"']))
}
