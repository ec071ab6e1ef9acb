//! A user's project folder: `profiles/`, `snippets/` and `golden/` found
//! from the current directory up, overriding the built-in ones; `extends`
//! finding a profile's siblings.

use std::fs;
use std::path::Path;

use crate::{Test, contains, root};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of the repository's profiles and golden files, as a user keeps them.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("profiles"), &dir.path().join("profiles"));
    copy_dir(&root().join("golden"), &dir.path().join("golden"));
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} in {}", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn check_sees_the_projects_profiles_from_anywhere_inside_it() {
    let dir = project();
    Test::new()
        .current_dir(dir.path())
        .args(["check"])
        .run()
        .success();
    edit(
        &dir.path().join("profiles/traffic-sign-gpu.yaml"),
        "timeout: 120m",
        "timeout: 90m",
    );
    let sub = dir.path().join("notes/2026");
    fs::create_dir_all(&sub).unwrap();
    for cwd in [dir.path(), sub.as_path()] {
        let run = Test::new()
            .current_dir(cwd)
            .args(["check"])
            .run()
            .failure(1);
        contains(&run.stdout(), "-    TIMEOUT_S=7200");
        contains(&run.stdout(), "+    TIMEOUT_S=5400");
        // traffic-sign-gpu-spot extends it and drifts with it; g6-quick
        // extends it too, and overrides the timeout itself.
        contains(&run.stderr(), "2 of 3 profiles drifted");
    }
    // --bless rewrites the project's golden files, not the repository's.
    Test::new()
        .current_dir(&sub)
        .args(["check", "--bless"])
        .run()
        .success();
    contains(
        &fs::read_to_string(dir.path().join("golden/traffic-sign-gpu.yaml")).unwrap(),
        "TIMEOUT_S=5400",
    );
    assert!(
        fs::read_to_string(root().join("golden/traffic-sign-gpu.yaml"))
            .unwrap()
            .contains("TIMEOUT_S=7200")
    );
}

#[test]
fn validate_points_at_a_typo_d_instance_type_or_region_in_the_project() {
    let dir = project();
    let profile = dir.path().join("profiles/traffic-sign-gpu.yaml");
    edit(&profile, "types: [g6e.xlarge]", "types: [g6e.xlarg]");
    let run = Test::new()
        .current_dir(dir.path())
        .args(["validate", "traffic-sign-gpu"])
        .run()
        .failure(1);
    contains(
        &run.stderr(),
        "error[unknown-instance-type]: `g6e.xlarg` is not an EC2 instance type",
    );
    contains(&run.stderr(), "--> profiles/traffic-sign-gpu.yaml:10:11");
    contains(&run.stderr(), "did you mean `g6e.xlarge`?");
    edit(&profile, "types: [g6e.xlarg]", "types: [g6e.xlarge]");
    edit(&profile, "region: us-east-2", "region: us-east-9");
    let run = Test::new()
        .current_dir(dir.path())
        .args(["validate", "traffic-sign-gpu"])
        .run()
        .failure(1);
    contains(
        &run.stderr(),
        "error[unknown-region]: `us-east-9` is not an AWS region",
    );
    contains(&run.stderr(), "--> profiles/traffic-sign-gpu.yaml:6:11");
    assert!(
        !run.stderr().contains("region-mismatch"),
        "{}",
        run.stderr()
    );
}

#[test]
fn list_says_where_each_comes_from_and_options_still_win() {
    let dir = project();
    let extra = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(dir.path().join("profiles/traffic-sign-gpu.yaml")).unwrap();
    let summary = text.lines().find(|l| l.starts_with("summary:")).unwrap();
    fs::write(
        extra.path().join("traffic-sign-gpu.yaml"),
        text.replace(summary, "summary: from --profiles"),
    )
    .unwrap();
    let run = Test::new()
        .current_dir(dir.path())
        .args(["list", "--json"])
        .run()
        .success();
    let rows: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(rows[1]["from"], "profiles/traffic-sign-gpu.yaml");
    let run = Test::new()
        .current_dir(dir.path())
        .args(["list", "snippets", "--json"])
        .run()
        .success();
    let rows: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(rows[0]["from"], "built-in", "the project has no snippets/");
    let run = Test::new()
        .current_dir(dir.path())
        .arg("--profiles")
        .arg(extra.path())
        .args(["list", "--json"])
        .run()
        .success();
    let rows: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(rows[1]["summary"], "from --profiles");
    assert!(
        rows[1]["from"]
            .as_str()
            .unwrap()
            .ends_with("traffic-sign-gpu.yaml")
    );
    assert_ne!(rows[1]["from"], "profiles/traffic-sign-gpu.yaml");
}

#[test]
fn extends_finds_the_sibling_of_a_profile_given_by_path() {
    let dir = project();
    edit(
        &dir.path().join("profiles/traffic-sign-gpu.yaml"),
        "kill_after: 60s",
        "kill_after: 45s",
    );
    // From outside any project: the sibling, not the built-in parent.
    let elsewhere = tempfile::tempdir().unwrap();
    let run = Test::new()
        .current_dir(elsewhere.path())
        .arg("compile")
        .arg(dir.path().join("profiles/g6-quick.yaml"))
        .args(["--format", "cloud-config"])
        .run()
        .success();
    contains(&run.stdout(), "KILL_AFTER_S=45");
}

/// pre-commit, as a team's repository runs the hooks of
/// `.pre-commit-hooks.yaml`: `pre-commit try-repo` against a project whose
/// golden file is current passes, and fails once it has drifted.
#[test]
fn the_pre_commit_hooks_fail_on_a_drifted_golden_file() {
    if !crate::have("pre-commit") || !crate::have("git") {
        return;
    }
    let dir = project();
    let home = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_bootforge")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", home.path())
            .env("HOME", home.path())
            .env("GIT_AUTHOR_NAME", "test")
            .env("GIT_AUTHOR_EMAIL", "test@localhost")
            .env("GIT_COMMITTER_NAME", "test")
            .env("GIT_COMMITTER_EMAIL", "test@localhost")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("BOOTFORGE_PROFILES")
            .env_remove("BOOTFORGE_SNIPPETS")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let hooks = root().display().to_string();
    let try_repo = |hook: &str| run(&["pre-commit", "try-repo", &hooks, hook, "--all-files"]);
    assert!(run(&["git", "init", "-q"]).0);
    assert!(run(&["git", "add", "."]).0);
    for hook in ["bootforge-check", "bootforge-validate"] {
        let (ok, text) = try_repo(hook);
        assert!(ok, "{hook} on a current project:\n{text}");
        contains(&text, "Passed");
    }
    edit(
        &dir.path().join("golden/traffic-sign-gpu.yaml"),
        "TIMEOUT_S=7200",
        "TIMEOUT_S=5400",
    );
    assert!(run(&["git", "add", "."]).0);
    let (ok, text) = try_repo("bootforge-check");
    assert!(!ok, "a drifted golden file passed:\n{text}");
    contains(&text, "Failed");
    contains(&text, "+    TIMEOUT_S=7200");
}
