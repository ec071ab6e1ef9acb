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
        "completions",
        "man",
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

/// The subcommands `--help` lists.
fn commands() -> Vec<String> {
    let help = Test::new().arg("--help").run().success().stdout();
    let listed = help
        .split("Commands:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("--help lists the commands");
    listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_know_every_command_and_load_in_bash() {
    let commands = commands();
    assert!(commands.len() >= 10, "{commands:?}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = Test::new()
            .args(["completions", shell])
            .run()
            .success()
            .stdout();
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell} completions lack {c}");
        }
    }
    Test::new().args(["completions", "tcsh"]).run().failure(2);
    if crate::have("bash") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootforge.bash");
        let script = Test::new()
            .args(["completions", "bash"])
            .run()
            .success()
            .stdout();
        std::fs::write(&path, script).unwrap();
        // Loaded, asked for `bootforge la<TAB>`, it offers `launch`.
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=(bootforge {}); COMP_CWORD=1; _bootforge bootforge {} bootforge; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path.display(),
                "co",
                "co"
            ))
            .output()
            .unwrap();
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for c in commands.iter().filter(|c| c.starts_with("co")) {
            assert!(
                offered.lines().any(|l| l == c),
                "{c} not offered: {offered}"
            );
        }
        assert!(!offered.lines().any(|l| l == "list"), "{offered}");
    }
}

#[test]
fn man_pages_cover_every_command() {
    let page = Test::new().arg("man").run().success().stdout();
    assert!(page.contains(".TH bootforge 1"), "{page}");
    for c in commands() {
        assert!(
            page.contains(&format!("bootforge\\-{}", c.replace('-', "\\-"))),
            "no {c} in the page"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    Test::new()
        .arg("man")
        .arg("--dir")
        .arg(&out)
        .run()
        .success();
    for c in commands() {
        let page = std::fs::read_to_string(out.join(format!("bootforge-{c}.1")))
            .unwrap_or_else(|e| panic!("bootforge-{c}.1: {e}"));
        assert!(page.contains(&format!(".TH bootforge-{c} 1")), "{page}");
        let synopsis = format!("\\fBbootforge {}\\fR", c.replace('-', "\\-"));
        assert!(page.contains(&synopsis), "{page}");
    }
    assert!(out.join("bootforge.1").is_file());
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
    assert_eq!(json["payload"]["raw_bytes"], golden.len());
    assert_eq!(
        json["payload"]["bytes"],
        crate::compile::default_launched_bytes().len()
    );
    assert_eq!(json["payload"]["limit"], 16384);
    assert_eq!(json["payload"]["gzip"], true);
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
