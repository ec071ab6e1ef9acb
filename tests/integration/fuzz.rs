//! Ten thousand generated profiles and `--set` values: the parser and the
//! compiler never panic, every failure is a diagnostic with a message and,
//! in the file, a position inside its text; validate answers the same
//! twice; what compiles compiles to the same bytes and reads back.

use proptest::prelude::*;

use crate::root;

const TOKENS: &[&str] = &[
    ":",
    "-",
    " ",
    "\n",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "\t",
    "null",
    "~",
    "true",
    "1e999",
    "-1",
    "99999999999999999999",
    "é",
    "snippets:",
    "job:\n  ",
    "extends: traffic-sign-gpu\n",
    "extends: fuzz\n",
    "timeout: 0s",
    "  ",
    "%",
    "@",
    "`",
    "|",
    ">",
    "? ",
    "---\n",
    "...\n",
    "\\",
    "\u{0}",
    "{{ job.id }}",
    "$(id)",
    "fs-0",
    "/",
    "mounts: []",
    "- fs_id: fs-0fdfeb8ca8304e991\n",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(f64, usize),
    Delete(f64, usize),
    SwapLines(f64, f64),
    DuplicateLine(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0.0..1.0, 0..TOKENS.len()).prop_map(|(at, t)| Edit::Insert(at, t)),
        (0.0..1.0, 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (0.0..1.0, 0.0..1.0).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (0.0..1.0).prop_map(Edit::DuplicateLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
        match e {
            Edit::Insert(f, t) => {
                let i = at(*f, chars.len());
                chars.splice(i..i, TOKENS[*t].chars());
            }
            Edit::Delete(f, n) => {
                let i = at(*f, chars.len());
                let j = (i + n).min(chars.len());
                chars.drain(i..j);
            }
            Edit::SwapLines(a, b) | Edit::DuplicateLine(a @ b) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let (i, j) = (at(*a, lines.len() - 1), at(*b, lines.len() - 1));
                if matches!(e, Edit::DuplicateLine(_)) {
                    lines.insert(i, lines[i]);
                } else {
                    lines.swap(i, j);
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

const PATHS: &[&str] = &[
    "job.timeout",
    "job.grace",
    "job.kill_after",
    "job_id",
    "job.id",
    "job.user",
    "job.log_dir",
    "instance.types",
    "instance.gpu",
    "instance.tags.X",
    "instance.max_cost_usd",
    "snippets.pipeline.args",
    "snippets.pipeline.env",
    "snippets.pipeline.env.A",
    "snippets.efs-mount.mounts",
    "snippets.efs-mount.attempts",
    "snippets.deadman",
    "snippets.nope",
    "snippets",
    "output.compression",
    "extends",
    "summary",
    "x.y.z",
    "instance.types.0",
    "snippets.requirements.on_failure",
    "snippets.gpu-ready.required",
];

const VALUES: &[&str] = &[
    "",
    "0",
    "-1",
    "1e400",
    "30m",
    "0s",
    "8d",
    "[a, b]",
    "{a: 1}",
    "null",
    "~",
    "true",
    "false",
    "'quoted'",
    "$(touch x)",
    "[",
    "{",
    "g6.xlarge",
    "L4",
    "[{fs_id: fs-0123abcd, mount_point: /x}]",
    "[{}]",
    "é\u{0}",
    "stop",
    "gzip",
    "fuzz",
    "traffic-sign-gpu",
    "\n",
    "a: b: c",
];

fn library() -> bootforge::Library {
    bootforge::Library::builtin()
}

/// What must hold of any profile, however broken: diagnostics, never a
/// panic; a diagnostic about the profile's own file points inside its text;
/// the same answer twice; and a profile that compiles compiles to the same
/// bytes again, which read back as the same document.
fn check(library: &bootforge::Library, text: &str, overrides: &[bootforge::Override]) {
    let found = bootforge::validate(library, "fuzz", overrides);
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &found {
        assert!(!d.message.is_empty(), "{d:?}");
        if d.file.as_deref() == Some("fuzz.yaml") {
            let at = d
                .location
                .as_ref()
                .unwrap_or_else(|| panic!("no position in the file: {d}\n{text}"));
            assert!(
                (1..=lines.len()).contains(&at.line),
                "line {} of {}: {d}\n{text}",
                at.line,
                lines.len()
            );
            let line = lines[at.line - 1];
            assert!(
                at.column <= line.chars().count() + 1,
                "column {} of {:?}: {d}",
                at.column,
                line
            );
            if let Some(shown) = &at.text {
                assert_eq!(shown, line.trim_end_matches('\r'), "{d}");
            }
        }
    }
    assert_eq!(
        found,
        bootforge::validate(library, "fuzz", overrides),
        "validate answered differently the second time"
    );
    let Ok(first) = bootforge::compile(library, "fuzz", overrides) else {
        return;
    };
    let again = bootforge::compile(library, "fuzz", overrides).expect("it compiled once");
    assert_eq!(
        first.payload.bytes, again.payload.bytes,
        "the same inputs, other bytes"
    );
    // The document reads back as YAML, holding the files as they were made.
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&first.cloud_config)
        .unwrap_or_else(|e| panic!("the payload is not YAML ({e}):\n{}", first.cloud_config));
    let written = doc["write_files"]
        .as_sequence()
        .map_or(&[][..], Vec::as_slice);
    assert_eq!(written.len(), first.files.len());
    for (entry, file) in written.iter().zip(&first.files) {
        assert_eq!(entry["path"].as_str(), Some(file.path.as_str()));
        assert_eq!(entry["content"].as_str(), Some(file.content.as_str()));
    }
    let round: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    assert_eq!(round, doc);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn mutated_profiles_give_diagnostics_not_panics(edits in proptest::collection::vec(edit(), 1..6)) {
        let base = std::fs::read_to_string(root().join("profiles/traffic-sign-gpu.yaml")).unwrap();
        let text = apply(&base, &edits);
        let mut library = library();
        library.add_profile_text("fuzz", "fuzz.yaml", &text);
        check(&library, &text, &[]);
    }

}

proptest! {
    // Each case compiles the whole profile: half as many keep the run short.
    #![proptest_config(ProptestConfig { cases: 5_000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn set_values_give_diagnostics_not_panics(sets in proptest::collection::vec((0..PATHS.len(), 0..VALUES.len(), proptest::bool::ANY), 1..4)) {
        let mut library = library();
        library.add_profile_text("fuzz", "fuzz.yaml", "extends: g6-quick\n");
        let mut overrides = Vec::new();
        for (p, v, with_equals) in sets {
            let arg = if with_equals { format!("{}={}", PATHS[p], VALUES[v]) } else { PATHS[p].to_string() };
            match bootforge::Override::parse(&arg) {
                Ok(o) => overrides.push(o),
                Err(e) => prop_assert_eq!(e.exit_code(), 2),
            }
        }
        check(&library, "extends: g6-quick\n", &overrides);
    }
}
