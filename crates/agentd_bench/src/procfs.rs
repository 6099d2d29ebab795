//! CPU time of processes from `/proc`: one process (all its threads, living and exited), and a whole process
//! tree one level deep — a PostgreSQL cluster is its postmaster, the postmaster's children (backends,
//! checkpointer, autovacuum…) and the children it has already reaped (`cutime` + `cstime`).

use std::fs;
use std::time::Duration;

/// `/proc/<pid>/stat` fields from field 3 (`state`) on; the command name, which may hold spaces, is skipped.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(") ")?;
    // Field 3 (state) is a letter; keep the numeric fields at their index by mapping it to 0.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

/// Clock ticks (USER_HZ = 100 on Linux) as a duration.
fn ticks(t: u64) -> Duration {
    Duration::from_millis(t * 10)
}

// Indexes into `stat_fields` (field number − 3).
const PPID: usize = 1;
const UTIME: usize = 11;
const STIME: usize = 12;
const CUTIME: usize = 13;
const CSTIME: usize = 14;

/// User + system CPU time of a process (all threads, exited ones included).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let f = stat_fields(pid)?;
    Some(ticks(f.get(UTIME)? + f.get(STIME)?))
}

/// The parent of a process.
pub fn ppid(pid: u32) -> Option<u32> {
    let f = stat_fields(pid)?;
    u32::try_from(*f.get(PPID)?).ok()
}

/// CPU time of `root`, of its living children, and of the children it has reaped. A child that exits between
/// two readings moves from the second term to the third, so the sum only grows.
pub fn tree_cpu(root: u32) -> Option<Duration> {
    let f = stat_fields(root)?;
    let own = f.get(UTIME)? + f.get(STIME)? + f.get(CUTIME)? + f.get(CSTIME)?;
    let mut children = 0;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(c) = stat_fields(pid)
            && c.get(PPID).copied() == Some(u64::from(root))
        {
            children += c.get(UTIME).copied().unwrap_or(0) + c.get(STIME).copied().unwrap_or(0);
        }
    }
    Some(ticks(own + children))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        let own = cpu_time(me);
        assert!(own.is_some());
        assert!(ppid(me).is_some_and(|p| p > 0));
        assert!(tree_cpu(me) >= own);
        assert_eq!(cpu_time(u32::MAX), None);
    }

    #[test]
    fn reaped_children_count_in_the_tree() {
        let me = std::process::id();
        let before = tree_cpu(me).unwrap_or_default();
        // Hashes 100 MB in grandchildren that the shell reaps, then we reap the shell.
        let status = std::process::Command::new("sh")
            .args(["-c", "head -c 100000000 /dev/zero | sha256sum >/dev/null"])
            .status();
        assert!(status.is_ok_and(|s| s.success()));
        let after = tree_cpu(me).unwrap_or_default();
        assert!(
            after >= before + Duration::from_millis(10),
            "{before:?} → {after:?}"
        );
    }
}
