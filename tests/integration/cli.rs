//! The command line: help, listing, explain, and the errors bad input gets.

use crate::{Test, fixtures};

/// Runs `args` with the fixture profiles, snippets and broken profiles.
fn broken(args: &[&str]) -> crate::Run {
    Test::with_fixtures()
        .arg("--profiles")
        .arg(fixtures().join("broken"))
        .args(args)
        .run()
}

macro_rules! error_snapshot {
    ($name:ident, $code:expr, [$($arg:expr),*]) => {
        #[test]
        fn $name() {
            let run = broken(&[$($arg),*]).failure($code);
            assert!(run.stdout().is_empty(), "nothing on stdout when failing");
            insta::assert_snapshot!(stringify!($name), run.stderr_scrubbed());
        }
    };
}

error_snapshot!(unknown_snippet, 1, ["compile", "unknown-snippet"]);
error_snapshot!(requires_missing, 1, ["compile", "requires"]);
error_snapshot!(conflicting_snippets, 1, ["compile", "conflicts"]);
error_snapshot!(missing_required_param, 1, ["compile", "missing-param"]);
error_snapshot!(unknown_param, 1, ["compile", "unknown-param"]);
error_snapshot!(param_of_wrong_type, 1, ["compile", "wrong-type"]);
error_snapshot!(
    template_reads_undeclared_variable,
    1,
    ["compile", "undeclared"]
);
error_snapshot!(unknown_profile_key, 1, ["compile", "unknown-key"]);
error_snapshot!(yaml_syntax, 1, ["compile", "yaml-syntax"]);
error_snapshot!(extends_cycle, 1, ["compile", "cycle-a"]);
error_snapshot!(missing_required_field, 1, ["compile", "missing-ami"]);
error_snapshot!(job_field_of_wrong_type, 1, ["compile", "wrong-type-job"]);
error_snapshot!(snippet_manifest_unknown_key, 1, ["compile", "bad-manifest"]);
error_snapshot!(snippet_template_syntax, 1, ["compile", "bad-template"]);
error_snapshot!(
    snippet_fragment_not_a_mapping,
    1,
    ["compile", "bad-fragment"]
);
error_snapshot!(unknown_profile, 2, ["compile", "trafic-sign-gpu"]);
error_snapshot!(set_without_equals, 2, ["compile", "--set", "job.timeout"]);
error_snapshot!(set_unknown_key, 2, ["compile", "--set", "job.timout=5m"]);
error_snapshot!(set_wrong_type, 2, ["compile", "--set", "job.timeout=soon"]);
error_snapshot!(
    set_bad_param,
    2,
    ["compile", "--set", "snippets.efs-mount.attempts=0"]
);
error_snapshot!(set_bad_job_id, 2, ["compile", "--set", "job_id=../../etc"]);
error_snapshot!(
    missing_profiles_dir,
    2,
    ["--profiles", "/nonexistent/bootforge", "compile"]
);

#[test]
fn usage_errors_exit_2() {
    Test::new().arg("compiel").run().failure(2);
    Test::new()
        .args(["compile", "--format", "xml"])
        .run()
        .failure(2);
}

#[test]
fn help_has_an_example_for_each_command() {
    let mut commands = vec![
        "compile",
        "explain",
        "validate",
        "check",
        "list",
        "schema",
        "cost",
        "iam-policy",
    ];
    if cfg!(feature = "smoke") {
        commands.push("smoke");
    }
    if cfg!(feature = "aws") {
        commands.extend(["launch", "ps", "terminate", "reap"]);
    }
    for command in commands {
        let run = Test::new().args([command, "--help"]).run().success();
        assert!(
            run.stdout().contains("Examples:\n  bootforge "),
            "{command} --help:\n{}",
            run.stdout()
        );
    }
    let run = Test::new().arg("--help").run().success();
    insta::assert_snapshot!("help", run.stdout());
}

#[test]
fn list_shows_profiles_and_snippets_with_summaries() {
    let run = Test::new().arg("list").run().success();
    insta::assert_snapshot!("list_profiles", run.stdout());
    let run = Test::new().args(["list", "snippets"]).run().success();
    insta::assert_snapshot!("list_snippets", run.stdout());
}

#[test]
fn explain_tells_where_every_value_came_from() {
    let run = Test::new()
        .args(["explain", "g6-quick", "--set", "job.timeout=20m", "--set"])
        .arg("snippets.pipeline.args=[--fast]")
        .run()
        .success();
    let text = run.stdout();
    for line in [
        "job.timeout 20m [--set job.timeout=20m]",
        "instance.types [\"g6.xlarge\"] [profile g6-quick]",
        "instance.region us-east-2 [parent profile traffic-sign-gpu]",
        "job.kill_after 1m [parent profile traffic-sign-gpu]",
        "job.state_dir /var/lib/bootforge [default]",
        "wait_seconds 120 [profile g6-quick]",
        "args [\"--fast\"] [--set snippets.pipeline.args=[--fast]]",
    ] {
        assert!(has_line(&text, line), "no line `{line}` in:\n{text}");
    }
    assert!(
        !text.contains(". requirements:"),
        "a dropped snippet is not listed:\n{text}"
    );
    let sha = text.lines().last().unwrap();
    insta::assert_snapshot!(
        "explain_default",
        Test::new()
            .arg("explain")
            .run()
            .success()
            .stdout()
            .replace(sha, "  sha256: [SHA]")
    );
}

#[test]
fn explain_json_carries_sizes_and_origins() {
    let run = Test::new().args(["explain", "--json"]).run().success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let golden = std::fs::read(crate::root().join("golden/traffic-sign-gpu.yaml")).unwrap();
    assert_eq!(json["payload"]["bytes"], golden.len());
    assert_eq!(json["payload"]["limit"], 16384);
    assert_eq!(json["payload"]["gzip"], false);
    assert_eq!(json["snippets"][0]["name"], "deadman");
}

#[test]
fn validate_is_silent_on_success_and_reports_failures() {
    let run = Test::new().arg("validate").run().success();
    assert!(run.stdout().is_empty() && run.stderr().is_empty());
    let run = broken(&["validate", "requires", "conflicts"]).failure(1);
    assert_eq!(
        run.stderr().matches("error[").count(),
        2,
        "{}",
        run.stderr()
    );
}

/// Whether `text` has a line that reads `line` once runs of spaces are one.
fn has_line(text: &str, line: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == line)
}
