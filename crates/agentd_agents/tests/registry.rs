//! Loading real agent folders: the shipped one, and broken files whose errors must name file, field and value.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use agentd_agents::{AgentRegistry, ImageDefaults, ModelSettings, OutputFormat};
use std::path::Path;

fn models() -> ModelSettings {
    let mut m = ModelSettings {
        default_model: "gpt-5.5".into(),
        ..Default::default()
    };
    m.by_key.insert("design".into(), "gpt-5.5-design".into());
    m
}

fn load_dir(files: &[(&str, &str)]) -> Result<AgentRegistry, String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    AgentRegistry::load(dir.path(), &ImageDefaults::default(), &models()).map_err(|e| e.to_string())
}

#[test]
fn shipped_agents_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agents");
    let reg = AgentRegistry::load(&dir, &ImageDefaults::default(), &models()).unwrap();
    let designer = reg.get("designer").unwrap();
    let img = designer.image.as_ref().unwrap();
    assert_eq!(
        (img.size.as_str(), img.output_format),
        ("1024x1024", OutputFormat::Png)
    );
    assert_eq!(img.model, "gpt-image-2");
    assert_eq!(img.partial_images, 2);
    let text_only: Vec<_> = reg.iter().filter(|a| a.image.is_none()).collect();
    assert!(!text_only.is_empty(), "a text-only agent ships");
    assert!(reg.default_agent().is_some());
}

#[test]
fn model_resolution_order() {
    let reg = load_dir(&[
        (
            "a.toml",
            "key='a'\ndisplay_name='A'\nmodel='pinned'\ninstructions='x'",
        ),
        (
            "b.toml",
            "key='b'\ndisplay_name='B'\nmodel_key='design'\ninstructions='x'",
        ),
        (
            "c.toml",
            "key='c'\ndisplay_name='C'\nmodel_key='unknown'\ninstructions='x'",
        ),
        ("d.toml", "key='d'\ndisplay_name='D'\ninstructions='x'"),
    ])
    .unwrap();
    let m = |k: &str| reg.get(k).unwrap().model.clone();
    assert_eq!(
        [m("a"), m("b"), m("c"), m("d")],
        ["pinned", "gpt-5.5-design", "gpt-5.5", "gpt-5.5"]
    );
}

#[test]
fn prompt_file_is_read_relative_to_the_folder() {
    let reg = load_dir(&[
        ("p.toml", "key='p'\ndisplay_name='P'\nprompt_path='p.md'"),
        ("p.md", "  You draw.  \n"),
    ])
    .unwrap();
    assert_eq!(reg.get("p").unwrap().instructions, "You draw.");
}

#[test]
fn errors_name_file_field_value_and_allowed() {
    let err = load_dir(&[(
        "designer.toml",
        "key='designer'\ndisplay_name='D'\ninstructions='x'\ntool_keys=['image_generation']\n\
         [tool_configs.image_generation]\nsize='999x999'\nquality='high'\n",
    )])
    .unwrap_err();
    assert!(
        err.contains("designer.toml: tool_configs.image_generation.size = \"999x999\""),
        "{err}"
    );
    assert!(err.contains("1024x1536"), "names what is allowed: {err}");

    let err = load_dir(&[(
        "x.toml",
        "key='x'\ndisplay_name='X'\ninstructions='x'\ncolour='blue'\n",
    )])
    .unwrap_err();
    assert!(
        err.contains("x.toml") && err.contains("unknown field `colour`"),
        "{err}"
    );

    let err = load_dir(&[(
        "x.toml",
        "key='x'\ndisplay_name='X'\ninstructions='x'\ntool_keys=['image_generation']\n\
         [tool_configs.image_generation]\nformat='png'\noutput_format='webp'\n",
    )])
    .unwrap_err();
    assert!(
        err.contains("give only one of `format` and `output_format`"),
        "{err}"
    );

    let err = load_dir(&[(
        "x.toml",
        "key='x'\ndisplay_name='X'\ninstructions='x'\ntool_keys=['image_generation']\n\
         [tool_configs.image_generation]\nquality='ultra'\n",
    )])
    .unwrap_err();
    assert!(
        err.contains("unknown variant `ultra`") && err.contains("`high`"),
        "{err}"
    );
}

#[test]
fn structural_rules() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("y.toml", "key='x'\ndisplay_name='X'\ninstructions='i'")],
            "must equal the file name",
        ),
        (
            &[("x.toml", "key='x'\ndisplay_name='X'")],
            "give `instructions` (inline) or `prompt_path`",
        ),
        (
            &[("x.toml", "key='x'\ndisplay_name='X'\nprompt_path='missing.md'")],
            "cannot read",
        ),
        (
            &[(
                "x.toml",
                "key='x'\ndisplay_name='X'\ninstructions='i'\nmodel='m'\nmodel_key='k'",
            )],
            "not both",
        ),
        (
            &[(
                "x.toml",
                "key='x'\ndisplay_name='X'\ninstructions='i'\ntool_keys=['web_search']",
            )],
            "tool_keys[0]",
        ),
        (
            &[(
                "x.toml",
                "key='x'\ndisplay_name='X'\ninstructions='i'\n[tool_configs.image_generation]\nsize='auto'",
            )],
            "add \"image_generation\" to tool_keys",
        ),
        (
            &[
                (
                    "a.toml",
                    "key='a'\ndisplay_name='A'\ninstructions='i'\ndefault=true",
                ),
                (
                    "b.toml",
                    "key='b'\ndisplay_name='B'\ninstructions='i'\ndefault=true",
                ),
            ],
            "at most one agent may be the default",
        ),
        (&[], "no agent files"),
    ];
    for (files, expected) in cases {
        let err = load_dir(files).unwrap_err();
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load_dir(&[
        ("a.toml", "key='a'\ndisplay_name=''\ninstructions='i'"),
        ("b.toml", "key='b'\ndisplay_name='B'"),
    ])
    .unwrap_err();
    assert!(err.starts_with("2 problem(s)"), "{err}");
}
