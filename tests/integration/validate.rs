//! `validate`, `schema` and the corpus of broken profiles: every mistake gets
//! a diagnostic that points at the text to fix.

use crate::{Test, contains, fixture_library, fixtures, root, scrub};

fn corpus_run(name: &str, extra: &[&str]) -> crate::Run {
    Test::new()
        .arg("--profiles")
        .arg(fixtures().join("profiles"))
        .arg("--profiles")
        .arg(root().join("tests/corpus"))
        .arg("--snippets")
        .arg(fixtures().join("snippets"))
        .args(["validate", name])
        .args(extra)
        .run()
}

#[test]
fn every_corpus_mistake_gets_a_diagnostic() {
    insta::glob!("../corpus", "*.yaml", |path| {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let run = corpus_run(name, &["--strict"]).failure(1);
        assert!(run.stdout().is_empty());
        let text = run.stderr_scrubbed();
        assert!(
            text.contains("error[") || text.contains("warning["),
            "{name}: {text}"
        );
        insta::assert_snapshot!(text);

        let run = corpus_run(name, &["--strict", "--format", "json"]).failure(1);
        let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let diagnostics = json.as_array().unwrap();
        assert!(!diagnostics.is_empty(), "{name}");
        // The file says what it must get: `# expect: CODE at FILE:LINE:COL`.
        let text = std::fs::read_to_string(path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: no `# expect:` header"));
        let (code, position) = expect.split_once(" at ").unwrap();
        let first = &diagnostics[0];
        assert_eq!(first["code"], code, "{name}: {first}");
        let got = format!(
            "{}:{}:{}",
            first["file"].as_str().unwrap_or_default(),
            first["line"],
            first["column"]
        );
        assert_eq!(got, position, "{name}: {first}");
        for d in diagnostics {
            for key in [
                "severity", "code", "message", "file", "line", "column", "path",
            ] {
                assert!(d.get(key).is_some(), "{name}: no {key} in {d}");
            }
            // A diagnostic about a profile file points at a line in it.
            let file = d["file"].as_str().unwrap_or_default();
            if file.ends_with(&format!("corpus/{name}.yaml")) && d["code"] != "extends-cycle" {
                assert!(
                    d["line"].is_u64() && d["column"].is_u64(),
                    "{name}: no position in {d}"
                );
            }
        }
    });
}

#[test]
fn the_seed_mistake_names_the_type_that_has_the_gpu() {
    let run = corpus_run("gpu-mismatch-l4-on-g6e", &[]).failure(1);
    let text = run.stderr();
    contains(
        &text,
        "`g6e.xlarge` carries an NVIDIA L40S 48 GB, not the L4",
    );
    contains(&text, "the L4 is on g6.xlarge");
}

#[test]
fn warnings_pass_unless_strict() {
    corpus_run("logs-not-kept", &[]).success();
    corpus_run("logs-not-kept", &["--strict"]).failure(1);
}

#[test]
fn every_repository_profile_validates_strictly() {
    let run = Test::new()
        .args(["validate", "--strict", "--format", "json"])
        .run()
        .success();
    assert_eq!(run.stdout().trim(), "[]");
}

#[test]
fn set_values_are_validated_too() {
    let run = Test::new()
        .args(["validate", "traffic-sign-gpu", "--set", "instance.gpu=L4"])
        .run()
        .failure(1);
    contains(&run.stderr(), "error[gpu-mismatch]");
    contains(
        &run.stderr(),
        "  --> --set:1:14\n  |\n1 | instance.gpu=L4\n  |              ^^",
    );
}

fn schema() -> serde_json::Value {
    let run = Test::new().arg("schema").run().success();
    serde_json::from_str(&run.stdout()).unwrap()
}

fn yaml_to_json(text: &str) -> serde_json::Value {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
    serde_json::to_value(yaml).unwrap()
}

#[test]
fn the_committed_schema_is_current() {
    let committed = std::fs::read_to_string(root().join("schema/profile.schema.json")).unwrap();
    let printed = Test::new().arg("schema").run().success().stdout();
    assert!(
        committed == printed,
        "schema/profile.schema.json is stale: run `cargo run -q -- schema > schema/profile.schema.json`"
    );
}

#[test]
fn every_profile_validates_against_the_schema_and_says_so() {
    let validator = jsonschema::draft7::new(&schema()).unwrap();
    for entry in std::fs::read_dir(root().join("profiles")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schema/profile.schema.json\n"),
            "{} lacks the schema modeline",
            path.display()
        );
        let errors: Vec<String> = validator
            .iter_errors(&yaml_to_json(&text))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

#[test]
fn the_schema_rejects_what_the_parser_rejects() {
    let validator = jsonschema::draft7::new(&schema()).unwrap();
    for name in [
        "unknown-top-key",
        "unknown-instance-key",
        "unknown-job-key",
        "types-not-a-list",
        "market-unknown",
        "spot-replaced",
        "duration-without-unit",
        "duration-in-words",
        "unknown-snippet",
        "snippet-params-not-a-mapping",
        "unknown-param",
        "param-wrong-type",
        "param-below-minimum",
        "param-not-allowed",
        "param-pattern",
        "param-relative-path",
        "object-unknown-field",
        "env-bad-name",
        "bad-job-id",
        "bad-ami",
        "bad-subnet",
        "security-group-name",
    ] {
        let text =
            std::fs::read_to_string(root().join(format!("tests/corpus/{name}.yaml"))).unwrap();
        assert!(
            !validator.is_valid(&yaml_to_json(&text)),
            "the schema accepts tests/corpus/{name}.yaml"
        );
    }
}

#[test]
fn the_schema_names_every_field_of_the_format() {
    // A profile with every optional field set, serialized: each key must be
    // in the schema, or editors would flag valid profiles.
    let library = fixture_library();
    let compiled = bootforge::compile(
        &library,
        "traffic-sign-gpu",
        &[
            "instance.instance_profile=x",
            "instance.root_volume_gb=100",
            "instance.availability_zone=us-east-2b",
        ]
        .map(|s| bootforge::Override::parse(s).unwrap()),
    )
    .unwrap();
    let full = serde_json::to_value(&compiled.profile.profile).unwrap();
    let schema = schema();
    for section in ["instance", "job", "output"] {
        for key in full[section].as_object().unwrap().keys() {
            assert!(
                schema["properties"][section]["properties"]
                    .get(key)
                    .is_some(),
                "the schema lacks {section}.{key}"
            );
        }
    }
}

#[test]
fn compiled_output_is_never_rejected_while_validate_passes() {
    // Every profile validate passes is one the static checks compile and
    // hand to cloud-init schema and shellcheck (static_checks.rs).
    let library = fixture_library();
    for name in crate::valid_profiles() {
        let found = bootforge::validate(&library, &name, &[]);
        assert!(
            found.is_empty(),
            "{name}: {}",
            found
                .iter()
                .map(|d| scrub(&d.to_string()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
