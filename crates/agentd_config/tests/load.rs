//! Loading configuration from files and an explicit environment: names verbatim, precise errors, redaction.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_agents::{OutputFormat, Quality};
use agentd_config::{LogFormat, StorageProvider, load_with_env};
use std::path::Path;

fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("config").join(name), text).unwrap();
    }
    dir
}

#[test]
fn zero_config_defaults() {
    let root = root_with(&[]);
    let s = load_with_env(root.path(), &[]).unwrap();
    assert_eq!(s.http.bind_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(s.database.url, "sqlite://var/agentd.sqlite");
    assert_eq!(s.storage.provider, StorageProvider::Filesystem);
    assert_eq!(s.storage.signed_url_ttl_seconds, 900);
    assert_eq!(
        (
            s.image.default_model.as_str(),
            s.image.output_max_mb,
            s.image.max_partial_images
        ),
        ("gpt-image-2", 6, 2)
    );
    assert!(s.offline());
    assert_eq!(
        s.metrics_addr.addr().map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9464")
    );
}

#[test]
fn metrics_addr_is_an_address_or_empty_for_off_and_never_the_public_port() {
    let root = root_with(&[]);
    let load = |vars: &[(&str, &str)]| load_with_env(root.path(), vars);
    assert_eq!(
        load(&[("METRICS_ADDR", "")]).unwrap().metrics_addr.addr(),
        None,
        "empty: off"
    );
    assert_eq!(
        load(&[("METRICS_ADDR", "0.0.0.0:0")])
            .unwrap()
            .metrics_addr
            .addr(),
        Some("0.0.0.0:0".parse().unwrap())
    );
    let off_in_file = root_with(&[("default.toml", "metrics_addr = ''\n")]);
    assert_eq!(
        load_with_env(off_in_file.path(), &[])
            .unwrap()
            .metrics_addr
            .addr(),
        None
    );
    let err = load(&[("METRICS_ADDR", "localhost")]).unwrap_err().to_string();
    assert!(
        err.contains("METRICS_ADDR=localhost is not allowed: use IP:PORT"),
        "{err}"
    );
    for (bind, metrics) in [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("0.0.0.0:9000", "127.0.0.1:9000"),
    ] {
        let err = load(&[("BIND_ADDR", bind), ("METRICS_ADDR", metrics)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "METRICS_ADDR={metrics} is not allowed: metrics never share the public port"
            )),
            "{err}"
        );
    }
    // Port 0 on both picks two different free ports.
    load(&[("BIND_ADDR", "127.0.0.1:0"), ("METRICS_ADDR", "127.0.0.1:0")]).unwrap();
}

#[test]
fn the_variable_table_and_env_example_list_the_same_names() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.example")).unwrap();
    let in_example: std::collections::BTreeSet<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        // APP_ENV picks the config file; AGENT_MODEL_<KEY> is a family, shown by one example.
        .filter(|k| *k != "APP_ENV" && !k.starts_with("AGENT_MODEL_") || *k == "AGENT_MODEL_DEFAULT")
        .collect();
    let in_table: std::collections::BTreeSet<&str> =
        agentd_config::ENV_NAMES.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        in_example, in_table,
        ".env.example and agentd_config::ENV_NAMES must list the same variables"
    );
}

#[test]
fn environment_names_are_the_cookbooks() {
    let root = root_with(&[]);
    let s = load_with_env(
        root.path(),
        &[
            ("IMAGE_DEFAULT_QUALITY", "medium"),
            ("IMAGE_DEFAULT_FORMAT", "webp"),
            ("IMAGE_DEFAULT_COMPRESSION", "80"),
            ("IMAGE_OUTPUT_MAX_MB", "8"),
            ("AGENT_MODEL_DEFAULT", "gpt-5.5-mini"),
            ("AGENT_MODEL_DESIGNER", "gpt-5.5"),
            ("AUTH_JWT_SECRET", "12345678901234567890123456789012"),
            ("DATABASE_URL", "postgres://u:hunter2@db/app"),
            ("BIND_ADDR", "0.0.0.0:9000"),
            ("STORAGE_PROVIDER", "minio"),
            ("MINIO_ENDPOINT", "http://127.0.0.1:9000"),
            ("MINIO_BUCKET", "agentd"),
            ("MINIO_ACCESS_KEY", "minioadmin"),
            ("MINIO_SECRET_KEY", "minio-secret"),
            ("OPENAI_API_KEY", "sk-test-secret"),
            ("LOG_FORMAT", "json"),
            ("OPENAI_BASE_URL", ""),
        ],
    )
    .unwrap();
    assert_eq!(
        (s.image.default_quality, s.image.default_format),
        (Quality::Medium, OutputFormat::Webp)
    );
    assert_eq!(
        (s.image.default_compression, s.image.output_max_mb),
        (Some(80), 8)
    );
    assert_eq!(
        s.models().by_key.get("designer").map(String::as_str),
        Some("gpt-5.5")
    );
    assert_eq!(s.models().default_model, "gpt-5.5-mini");
    assert_eq!(
        s.auth.jwt_secret.as_deref(),
        Some("12345678901234567890123456789012"),
        "digits stay a string"
    );
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(
        s.openai.base_url, "https://api.openai.com/v1",
        "an empty variable counts as unset"
    );
    assert!(!s.offline());

    let shown = s.redacted().to_string();
    for secret in ["hunter2", "sk-test-secret", "minio-secret", "1234567890123456789"] {
        assert!(!shown.contains(secret), "{secret} leaked into {shown}");
    }
    assert!(shown.contains("postgres://u:***@db/app"));
}

#[test]
fn bad_values_name_the_variable_the_value_and_the_allowed_values() {
    let root = root_with(&[]);
    let cases: &[(&str, &str, &str)] = &[
        (
            "IMAGE_DEFAULT_QUALITY",
            "ultra",
            "IMAGE_DEFAULT_QUALITY=ultra is not allowed: use one of low, medium, high, auto",
        ),
        (
            "IMAGE_DEFAULT_SIZE",
            "999x999",
            "IMAGE_DEFAULT_SIZE=999x999 is not allowed",
        ),
        (
            "IMAGE_MAX_PARTIAL_IMAGES",
            "7",
            "IMAGE_MAX_PARTIAL_IMAGES=7 is not allowed: use 0, 1, 2 or 3",
        ),
        (
            "STORAGE_PROVIDER",
            "ftp",
            "STORAGE_PROVIDER=ftp is not allowed: use one of memory, filesystem, minio, s3, gcs",
        ),
        ("BIND_ADDR", "localhost", "BIND_ADDR"),
        ("IMAGE_OUTPUT_MAX_MB", "lots", "IMAGE_OUTPUT_MAX_MB"),
        (
            "STORAGE_SIGNED_URL_TTL_SECONDS",
            "5",
            "STORAGE_SIGNED_URL_TTL_SECONDS=5 is not allowed",
        ),
    ];
    for (var, value, expected) in cases {
        let err = load_with_env(root.path(), &[(var, value)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expected),
            "{var}={value}: expected {expected:?} in {err}"
        );
    }
    let err = load_with_env(root.path(), &[("STORAGE_PROVIDER", "minio")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("STORAGE_PROVIDER=minio needs MINIO_ENDPOINT"),
        "{err}"
    );
    // The bucket too, at startup's check rather than from the object store once it is being built.
    assert!(err.contains("STORAGE_PROVIDER=minio needs MINIO_BUCKET"), "{err}");
}

#[test]
fn files_layer_under_the_environment() {
    let root = root_with(&[
        (
            "default.toml",
            "agent_model_default = 'from-default'\n[image]\ndefault_quality = 'low'\n",
        ),
        ("staging.toml", "[image]\ndefault_quality = 'medium'\n"),
    ]);
    let s = load_with_env(root.path(), &[("APP_ENV", "staging")]).unwrap();
    assert_eq!(
        (s.agent_model_default.as_str(), s.image.default_quality),
        ("from-default", Quality::Medium)
    );
    let s = load_with_env(
        root.path(),
        &[("APP_ENV", "staging"), ("IMAGE_DEFAULT_QUALITY", "high")],
    )
    .unwrap();
    assert_eq!(s.image.default_quality, Quality::High);
    let bad = root_with(&[("default.toml", "[image]\ndefault_qualty = 'low'\n")]);
    let err = load_with_env(bad.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("default_qualty") && err.contains("not a known setting"),
        "{err}"
    );
}

#[test]
fn the_shipped_default_toml_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    load_with_env(&root, &[]).unwrap();
}
