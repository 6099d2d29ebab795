//! A private PostgreSQL cluster for one test, when a test needs what the shared test cluster must not get: its
//! own configuration (a statement log), or to be stopped and restarted. `initdb` + `pg_ctl` from the machine's
//! binaries into a temp dir (as the `postgres` user when running as root), on a free loopback port; stopped and
//! removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running private cluster.
pub struct PrivatePostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub admin_url: String,
    /// The server's log file.
    pub log: PathBuf,
    dir: tempfile::TempDir,
    bin: PathBuf,
    options: String,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.push("/usr/local/bin".into());
    dirs.push("/usr/bin".into());
    dirs.into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .expect("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root).
fn as_pg(tool: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    /// Starts a cluster with extra server settings (`-c name=value` each).
    pub fn start(settings: &[&str]) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("agentd-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let data = dir.path().join("data");
        let mut init = as_pg(&bin.join("initdb"));
        init.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run(init, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.path().display()
        );
        for s in settings {
            options.push_str(&format!(" -c {s}"));
        }
        let pg = Self {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            log: dir.path().join("server.log"),
            dir,
            bin,
            options,
        };
        pg.pg_ctl("start");
        pg
    }

    fn pg_ctl(&self, action: &str) {
        let mut c = as_pg(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "30", "-m", "fast", "-o", &self.options, action]);
        run(c, &format!("pg_ctl {action}"));
    }

    /// Stops the server (fast shutdown: sessions are cut).
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts it again after [`PrivatePostgres::stop`].
    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    /// The log written since byte `from` (use [`PrivatePostgres::log_len`] to mark a point).
    pub fn log_since(&self, from: u64) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(all.get(from as usize..).unwrap_or_default()).into_owned()
    }

    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut c = as_pg(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = c.output();
    }
}
