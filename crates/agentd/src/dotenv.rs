//! `.env` for local runs, as `cp .env.example .env` users expect: read once at startup from the working
//! directory (where `config/` is read too), before the layered configuration (figment) looks at the
//! environment and before the runtime starts any thread. A variable already set in the environment wins; a
//! missing `.env` is fine; a malformed one stops startup naming its line (never its value: it may be a secret).

use std::path::Path;

/// Loads `path` into the process environment without overriding what is set. `Ok(false)` when there is none.
pub fn load(path: &Path) -> Result<bool, String> {
    if let Ok(content) = std::fs::read_to_string(path)
        && let Some((i, line)) = misread_comment(&content)
    {
        return Err(format!(
            "{}{} cannot be read as meant: dotenvy takes a quote mark in a comment after an even number of \
             spaces or tabs for an opening quote, and reads the lines after it as part of the value; put the \
             comment on a line of its own",
            path.display(),
            line_ref(i, line)
        ));
    }
    match dotenvy::from_path(path) {
        Ok(()) => Ok(true),
        Err(e) if e.not_found() => Ok(false),
        Err(dotenvy::Error::LineParse(bad, _)) => {
            // `bad` is the line, only its value, or a quoted value that runs on over the lines after it: its
            // first line finds the line to name by number and variable name.
            let content = std::fs::read_to_string(path).unwrap_or_default();
            let first = bad
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default();
            let at = content
                .lines()
                .enumerate()
                .find(|(_, l)| !first.is_empty() && l.contains(first))
                .map_or_else(String::new, |(i, l)| line_ref(i, l));
            Err(format!(
                "{}{at} cannot be read: write NAME=value, quote values that have spaces or `#` in them \
                 ('…' or \"…\"), or remove the line",
                path.display()
            ))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// " line N (NAME)" for the 0-based line `i`, or " line N" when it does not start with a variable name: the
/// rest of the line is never shown (it may be a secret, or a piece of one).
fn line_ref(i: usize, line: &str) -> String {
    let l = line.trim_start();
    let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
    let end = l
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(l.len());
    let name = &l[..end];
    if !name.is_empty() && l[end..].trim_start().starts_with('=') {
        format!(" line {} ({name})", i + 1)
    } else {
        format!(" line {}", i + 1)
    }
}

/// dotenvy 0.15 finds where an entry ends before it parses it, with a scan (`eval_end_state` in its `iter.rs`)
/// that takes `#` for a comment only after an odd number of spaces or tabs: after an even number a quote mark
/// in the comment opens a value that swallows the following lines — an error at the end of the file or, when a
/// later quote mark closes it, settings silently lost. The first line (0-based) with an unquoted value and a
/// comment that the same scan misreads so.
fn misread_comment(content: &str) -> Option<(usize, &str)> {
    content.lines().enumerate().find(|(_, line)| {
        let Some((_, value)) = line.split_once('=') else {
            return false;
        };
        let value = value.trim_start_matches([' ', '\t']);
        !line.trim_start().starts_with('#')
            && !value.starts_with(['\'', '"'])
            && (value.contains(" #") || value.contains("\t#"))
            && reads_on(line)
    })
}

/// dotenvy's end-of-entry scan over one line (its `\n` left off): whether the line ends inside a quote.
fn reads_on(line: &str) -> bool {
    #[derive(Clone, Copy)]
    enum S {
        Complete,
        Space,
        Escape,
        Strong,
        StrongEscape,
        Weak,
        WeakEscape,
    }
    let mut s = S::Complete;
    for c in line.chars() {
        s = match (s, c) {
            (S::Space, '#') => return false,
            (S::Space | S::Complete, '\\') => S::Escape,
            (S::Space | S::Complete, '"') => S::Weak,
            (S::Space | S::Complete, '\'') => S::Strong,
            (S::Complete, c) if c.is_whitespace() && c != '\r' => S::Space,
            (S::Space | S::Complete | S::Escape, _) => S::Complete,
            (S::Weak, '\\') => S::WeakEscape,
            (S::Weak, '"') => S::Complete,
            (S::Weak | S::WeakEscape, _) => S::Weak,
            (S::Strong, '\\') => S::StrongEscape,
            (S::Strong, '\'') => S::Complete,
            (S::Strong | S::StrongEscape, _) => S::Strong,
        };
    }
    matches!(s, S::Weak | S::WeakEscape | S::Strong | S::StrongEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_is_misread_after_an_even_number_of_spaces_with_a_quote_left_open() {
        assert!(reads_on("A=1  # it's"));
        assert!(reads_on("A=1\t\t# it's"));
        assert!(!reads_on("A=1 # it's"));
        assert!(!reads_on("A=1   # it's"));
        assert!(!reads_on("A=1  # a \"pair\" of quotes"));
        assert!(!reads_on("A=1  # no quote"));
        let content = "# it's fine here\nA=1 # it's\nB='x  # y'\nC=2  # don't\nD=3\n";
        assert_eq!(misread_comment(content), Some((3, "C=2  # don't")));
        assert_eq!(misread_comment("A=\"multi\nline\"\n"), None);
    }

    #[test]
    fn a_line_is_named_by_its_variable_only() {
        assert_eq!(line_ref(0, "export A_B.c = x"), " line 1 (A_B.c)");
        assert_eq!(line_ref(4, "sk-proj-secret"), " line 5");
        assert_eq!(line_ref(4, "KEY: secret"), " line 5");
        assert_eq!(line_ref(1, "\"abc=def"), " line 2");
    }
}
