//! `.env` for local runs, as `cp .env.example .env` users expect: read once at startup from the working
//! directory (where `config/` is read too), before the layered configuration (figment) looks at the
//! environment and before the runtime starts any thread. A variable already set in the environment wins; a
//! missing `.env` is fine; a malformed one stops startup naming its line (never its value: it may be a secret).

use std::collections::HashSet;
use std::path::Path;

/// Loads `path` into the process environment without overriding what is set. `Ok(false)` when there is none.
pub fn load(path: &Path) -> Result<bool, String> {
    let content = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let lines: Vec<&str> = content.lines().collect();
    let (at, by_comment) = match swallowing(&content, &lines) {
        Ok(None) => {
            dotenvy::from_read(content.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(true);
        }
        Ok(Some(i)) => (Some(i), true),
        Err(dotenvy::Error::LineParse(bad, _)) => {
            // `bad` is the line, only its value, or a value that ran on to the end of the file: its first line
            // finds the line to name by number and variable name.
            let first = bad
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default();
            let at = lines
                .iter()
                .position(|l| !first.is_empty() && l.contains(first) && !l.trim_start().starts_with('#'));
            let ran_on = bad.trim_end().contains('\n');
            (at, ran_on && at.is_some_and(|i| has_comment(lines[i])))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let at = at.map_or_else(String::new, |i| line_ref(i, lines[i]));
    let remedy = if by_comment {
        " as meant: dotenvy takes a quote mark in a comment after an even number of spaces or tabs for an opening \
         quote, and reads the lines after it as part of the value; put the comment on a line of its own"
    } else {
        ": write NAME=value, quote values that have spaces or `#` in them ('…' or \"…\"), or remove the line"
    };
    Err(format!("{}{at} cannot be read{remedy}", path.display()))
}

/// The line (0-based) whose value dotenvy reads on over the lines after it, losing their variables: a line with
/// a comment after its value, followed by variables that dotenvy does not return. dotenvy 0.15 finds where an
/// entry ends before parsing it, taking `#` for a comment only after an odd number of spaces or tabs, so a quote
/// mark in a comment after an even number opens a value up to the next quote mark — settings silently lost — or
/// to the end of the file, the `LineParse` error. The lines are read as a person reads them: as dotenvy does,
/// except that a comment's quote mark opens nothing; a line inside a quoted value sets no variable.
fn swallowing(content: &str, lines: &[&str]) -> Result<Option<usize>, dotenvy::Error> {
    let read = dotenvy::from_read_iter(content.as_bytes())
        .map(|entry| entry.map(|(name, _)| name))
        .collect::<Result<HashSet<String>, _>>()?;
    let mut last = None;
    let mut state = State::Complete;
    for (i, line) in lines.iter().enumerate() {
        let starts_entry = state == State::Complete;
        if starts_entry && line.trim_start().starts_with('#') {
            continue; // a comment line, which dotenvy skips whole
        }
        let end = scan(line, state);
        state = if end.opened_in_comment {
            State::Complete
        } else {
            end.state
        };
        let Some(name) = variable(line).filter(|_| starts_entry) else {
            continue;
        };
        if read.contains(name) {
            last = Some((i, end.opened_in_comment));
        } else if let Some((at, true)) = last {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// Whether the entry starting on `line` has a comment that opens a quoted value dotenvy reads on past the line.
fn has_comment(line: &str) -> bool {
    scan(line, State::Complete).opened_in_comment
}

/// Where dotenvy is in an entry: its `ParseState` without `Comment` (an entry that reaches one ends there).
#[derive(Clone, Copy, PartialEq)]
enum State {
    Complete,
    Blank,
    Escape,
    Weak,
    WeakEscape,
    Strong,
    StrongEscape,
}

/// How a line leaves an entry.
struct LineEnd {
    /// The state after its line break: `Complete` when the entry ends with it (or with a comment).
    state: State,
    /// It ends inside a quoted value whose quote mark came after a `#` that followed a blank — a comment to a
    /// person, part of the value to dotenvy (after an even number of blanks).
    opened_in_comment: bool,
}

/// dotenvy's `eval_end_state` over one line from `state`, mirrored state for state, then its line break.
fn scan(line: &str, mut state: State) -> LineEnd {
    let (mut after_blank, mut in_comment, mut opened_in_comment) = (false, false, false);
    for c in line.chars() {
        let blank = c.is_whitespace() && c != '\n' && c != '\r';
        state = match state {
            State::Blank if c == '#' => {
                return LineEnd {
                    state: State::Complete,
                    opened_in_comment: false,
                };
            }
            State::Complete | State::Blank => {
                in_comment |= c == '#' && after_blank;
                match c {
                    _ if blank && state == State::Complete => State::Blank,
                    '\\' => State::Escape,
                    '"' | '\'' => {
                        opened_in_comment = in_comment;
                        if c == '"' { State::Weak } else { State::Strong }
                    }
                    _ => State::Complete,
                }
            }
            State::Escape => State::Complete,
            State::Weak => match c {
                '\\' => State::WeakEscape,
                '"' => State::Complete,
                _ => State::Weak,
            },
            State::WeakEscape => State::Weak,
            State::Strong => match c {
                '\\' => State::StrongEscape,
                '\'' => State::Complete,
                _ => State::Strong,
            },
            State::StrongEscape => State::Strong,
        };
        after_blank = blank;
    }
    // The line break: it ends a blank or an escape (not a blank to dotenvy) and stays inside a quoted value.
    let state = match state {
        State::Blank | State::Escape => State::Complete,
        State::WeakEscape => State::Weak,
        State::StrongEscape => State::Strong,
        open => open,
    };
    LineEnd {
        state,
        opened_in_comment: opened_in_comment && state != State::Complete,
    }
}

/// The variable `line` sets (`NAME=…`, `export NAME=…`), if it sets one.
fn variable(line: &str) -> Option<&str> {
    let l = line.trim_start();
    let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
    let end = l
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(l.len());
    let name = &l[..end];
    (!name.is_empty() && l[end..].trim_start().starts_with('=')).then_some(name)
}

/// " line N (NAME)" for the 0-based line `i`, or " line N" when it sets no variable: the rest of the line is never
/// shown (it may be a secret, or a piece of one).
fn line_ref(i: usize, line: &str) -> String {
    match variable(line) {
        Some(name) => format!(" line {} ({name})", i + 1),
        None => format!(" line {}", i + 1),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn swallowing(content: &str) -> Result<Option<usize>, dotenvy::Error> {
        super::swallowing(content, &content.lines().collect::<Vec<_>>())
    }

    #[test]
    fn a_comment_that_swallows_the_lines_after_it_is_found() {
        let content = "# it's fine here\nA=1 # it's\nB='x  # y'\nC=2  # don't\nD=3\nE=4 # isn't\n";
        assert_eq!(swallowing(content).unwrap(), Some(3));
        assert_eq!(swallowing("A=1   # it's\nB=2\n").unwrap(), None);
        assert_eq!(swallowing("A=1  # a \"pair\" of quotes\nB=2\n").unwrap(), None);
        // A quoted value over several lines is not a comment's doing, even with ` #` on its first line (the
        // check took any ` #` for a comment that swallowed the lines after it).
        assert_eq!(swallowing("A=\"multi\nB=line\"\nC=3\n").unwrap(), None);
        assert_eq!(swallowing("A=\"multi # x\nB=two\"\nC=3\n").unwrap(), None);
        assert_eq!(swallowing("A=\"multi  # x\nB=two\"\nC=3\n").unwrap(), None);
        // Blanks and quote marks inside a quoted value are the value's: not a comment (the check counted them).
        assert_eq!(swallowing("A='x  # y\"\nB=two'\nC=3\n").unwrap(), None);
        assert_eq!(swallowing("A=\"x  # it's\nB=two\"\nC=3\n").unwrap(), None);
        // A comment's quote marks that close again within it do not swallow anything.
        assert_eq!(swallowing("A=1  # a 'pair'\nB=2\n").unwrap(), None);
        // A line inside a quoted value sets no variable, whatever comment it seems to have.
        let sidecar = "SIDECAR=\"\nPORT=8080  # sidecar's port\nLOG=debug\n\"\nPORT=3000\n";
        assert_eq!(swallowing(sidecar).unwrap(), None);
        // A comment line is skipped whole, its quote marks too (they would hide `A` and its comment).
        assert_eq!(
            swallowing("# it's\nA=1  # x's\nB=2\n# '\nC=3\n").unwrap(),
            Some(1)
        );
        // To the end of the file: dotenvy's own error.
        assert!(swallowing("A=1  # it's\nB=2\n").is_err());
    }

    #[test]
    fn a_line_is_named_by_its_variable_only() {
        assert_eq!(line_ref(0, "export A_B.c = x"), " line 1 (A_B.c)");
        assert_eq!(line_ref(4, "sk-proj-secret"), " line 5");
        assert_eq!(line_ref(4, "KEY: secret"), " line 5");
        assert_eq!(line_ref(1, "\"abc=def"), " line 2");
    }
}
