//! The container surfaces, checked without a Docker engine: `docker-compose.yml` as Debian's `docker-compose`
//! 1.29 reads it (`config` needs no daemon; `scripts/test-services.sh start` installs it), the images pinned,
//! the build context kept small, and `agentd healthcheck` (the image's HEALTHCHECK) against the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

const SECRET: &str = "compose-test-secret-0123456789abcdef";
const MINIO_PASSWORD: &str = "compose-test-minio-0123456789";

/// The `.env` compose needs: the JWT secret and MinIO's root password.
fn dot_env() -> String {
    format!("AUTH_JWT_SECRET={SECRET}\nMINIO_ROOT_PASSWORD={MINIO_PASSWORD}\n")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn docker_compose() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENTD_TEST_DOCKER_COMPOSE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("docker-compose"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "docker-compose not found: run `eval \"$(scripts/test-services.sh start)\"` (it installs Debian's \
                 docker-compose when root) or `apt-get install docker-compose`"
            )
        })
}

/// The compose file with what it references, in a directory of its own with `dot_env` as its `.env`, so
/// neither the developer's `.env` nor their environment takes part.
fn project(dot_env: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["docker-compose.yml", "Dockerfile", "deploy/nginx.conf"] {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(f), to).unwrap();
    }
    if let Some(text) = dot_env {
        std::fs::write(dir.path().join(".env"), text).unwrap();
    }
    dir
}

fn compose(dir: &Path, args: &[&str]) -> Output {
    Command::new(docker_compose())
        .current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `docker-compose config`, parsed.
fn resolved() -> Yaml {
    let dir = project(Some(&dot_env()));
    let out = compose(dir.path(), &["config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    YamlLoader::load_from_str(&text(&out.stdout)).unwrap().remove(0)
}

/// The services that run the agentd image, by name.
fn agentd_services(doc: &Yaml) -> Vec<(String, Yaml)> {
    doc["services"]
        .as_hash()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["image"].as_str() == Some("agentd:local"))
        .map(|(k, s)| (k.as_str().unwrap().to_owned(), s.clone()))
        .collect()
}

#[test]
fn compose_validates_with_a_secret_in_dot_env() {
    let dir = project(Some(&dot_env()));
    let out = compose(dir.path(), &["config", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn compose_refuses_to_run_without_a_jwt_secret_or_a_minio_password() {
    let no_secret = format!("AUTH_JWT_SECRET=\nMINIO_ROOT_PASSWORD={MINIO_PASSWORD}\n");
    let no_password = format!("AUTH_JWT_SECRET={SECRET}\n");
    for (dot_env, missing) in [
        (None, "is not set"),
        (Some(no_secret.as_str()), "AUTH_JWT_SECRET is not set"),
        (Some(no_password.as_str()), "MINIO_ROOT_PASSWORD is not set"),
    ] {
        let dir = project(dot_env);
        let out = compose(dir.path(), &["config", "-q"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{dot_env:?} validated");
        assert!(
            err.contains(missing) && err.contains(".env"),
            "the refusal says what is missing and where to put it: {err}"
        );
    }
}

/// Only the proxy and MinIO's S3 port (presigned downloads) are published beyond the host's loopback:
/// PostgreSQL and the MinIO console answer to anyone who reaches the host otherwise, and MinIO's root password
/// is the operator's, never a default anyone knows.
#[test]
fn only_the_proxy_and_downloads_are_published_and_minio_has_no_default_password() {
    let doc = resolved();
    for (name, s) in doc["services"].as_hash().unwrap() {
        let name = name.as_str().unwrap();
        for port in s["ports"].as_vec().map_or(&[][..], Vec::as_slice) {
            // Published on every interface: `{published, target}`; on loopback: "127.0.0.1:HOST:CONTAINER/tcp".
            if let Some(spec) = port.as_str() {
                assert!(spec.starts_with("127.0.0.1:"), "{name} publishes {spec}");
                continue;
            }
            let published = port["published"].as_i64();
            assert!(
                matches!((name, published), ("proxy", Some(8080)) | ("minio", Some(9000))),
                "{name} publishes {port:?} beyond the host's loopback"
            );
        }
    }
    let minio = &doc["services"]["minio"]["environment"];
    assert_eq!(minio["MINIO_ROOT_PASSWORD"].as_str(), Some(MINIO_PASSWORD));
    for (name, s) in agentd_services(&doc) {
        if !s["environment"]["MINIO_SECRET_KEY"].is_badvalue() {
            assert_eq!(
                s["environment"]["MINIO_SECRET_KEY"].as_str(),
                Some(MINIO_PASSWORD),
                "{name}: the password comes from .env"
            );
        }
    }
}

#[test]
fn compose_sets_only_variables_the_server_reads() {
    let doc = resolved();
    let services = agentd_services(&doc);
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.len() >= 3, "migrate and two replicas: {names:?}");
    let read = |name: &str| {
        agentd_config::ENV_NAMES.iter().any(|(n, _)| *n == name)
            || matches!(name, "APP_ENV" | "RUST_LOG")
            || name.starts_with("AGENT_MODEL_")
    };
    for (service, s) in &services {
        for (k, _) in s["environment"].as_hash().unwrap() {
            let k = k.as_str().unwrap();
            assert!(
                read(k),
                "{service} sets {k}, which agentd does not read (agentd_config::ENV_NAMES)"
            );
        }
    }
    let replica = &services.iter().find(|(n, _)| n == "agentd-1").unwrap().1;
    assert_eq!(
        replica["environment"]["AUTH_JWT_SECRET"].as_str(),
        Some(SECRET),
        "the secret comes from .env"
    );
}

#[test]
fn compose_runs_two_healthy_replicas_behind_a_streaming_proxy() {
    let doc = resolved();
    let replicas: Vec<(String, Yaml)> = agentd_services(&doc)
        .into_iter()
        .filter(|(_, s)| s["command"].is_badvalue())
        .collect();
    assert_eq!(replicas.len(), 2, "two agentd replicas");
    let nginx = std::fs::read_to_string(repo().join("deploy/nginx.conf")).unwrap();
    let proxy = &doc["services"]["proxy"];
    assert!(proxy["image"].as_str().unwrap().starts_with("nginx:"));
    assert_eq!(
        proxy["ports"][0]["published"].as_i64(),
        Some(8080),
        "{:?}",
        proxy["ports"]
    );
    for (name, s) in &replicas {
        let test: Vec<&str> = s["healthcheck"]["test"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(
            test,
            ["CMD", "agentd", "healthcheck"],
            "{name}: a healthcheck on /readyz"
        );
        assert!(
            nginx.contains(&format!("server {name}:8080;")),
            "{name} is not behind the proxy"
        );
        let condition = &proxy["depends_on"][name.as_str()]["condition"];
        assert_eq!(
            condition.as_str(),
            Some("service_healthy"),
            "the proxy waits for {name}"
        );
        assert!(
            s["ports"].is_badvalue(),
            "{name} is reached through the proxy only"
        );
    }
    for directive in [
        "proxy_buffering off;",
        "proxy_read_timeout 1h;",
        "proxy_http_version 1.1;",
    ] {
        assert!(nginx.contains(directive), "nginx.conf lacks {directive}");
    }
}

#[test]
fn images_are_pinned_and_the_build_context_is_small() {
    let doc = resolved();
    for (name, s) in doc["services"].as_hash().unwrap() {
        let image = s["image"].as_str().unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t);
        assert!(
            tag.is_some_and(|t| t != "latest" && !t.contains('/')),
            "{name:?} uses {image}: pin a tag"
        );
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        assert!(
            image.contains(':') && !image.ends_with(":latest") || image == "chef",
            "{line}: pin a tag"
        );
    }
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("\"healthcheck\""));
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for entry in ["target/", "var/", ".git", ".env"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

#[test]
fn healthcheck_asks_readyz_on_bind_addr() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config/agents")).unwrap();
    for f in std::fs::read_dir(repo().join("config/agents")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join("config/agents").join(f.file_name().unwrap())).unwrap();
    }
    let agentd = |args: &[&str], bind: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentd"));
        c.current_dir(dir.path())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND_ADDR", bind)
            .env("METRICS_ADDR", "");
        c
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens yet: unhealthy, exit 1, saying what it asked.
    let out = agentd(&["healthcheck"], &format!("0.0.0.0:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("http://127.0.0.1:{port}/readyz")),
        "{}",
        text(&out.stderr)
    );

    let mut server = agentd(&[], &format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..600 {
        let out = agentd(&["healthcheck"], &format!("0.0.0.0:{port}"))
            .output()
            .unwrap();
        if out.status.success() {
            healthy = true;
            break;
        }
        if server.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        healthy,
        "agentd healthcheck never saw the zero-config server ready"
    );
}
