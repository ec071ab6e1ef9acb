//! Static checks of every payload: `cloud-init schema` on the document,
//! `bash -n` and shellcheck on every script, `sh -n` on every command that
//! cloud-init hands to `/bin/sh`.

use std::path::Path;
use std::process::Command;

use serde_yaml_ng::Value;

use crate::{fixture_library, have};

/// Every profile of the repository, the corpus's valid ones, and the
/// fixture profiles that compile.
fn profiles() -> Vec<String> {
    let mut names = crate::valid_profiles();
    names.extend(["echo", "merged", "multipart", "gzipped"].map(String::from));
    names
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run the checker");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A script's shell, from its shebang.
fn shell_of(script: &str) -> Option<&'static str> {
    let first = script.lines().next()?;
    if first.starts_with("#!") && first.contains("bash") {
        Some("bash")
    } else if first.starts_with("#!") && first.ends_with("sh") {
        Some("sh")
    } else {
        None
    }
}

fn check_script(what: &str, shell: &str, script: &str, dir: &Path) {
    let file = dir.join("script");
    std::fs::write(&file, script).unwrap();
    let (ok, text) = run(Command::new(shell).arg("-n").arg(&file));
    assert!(ok, "{what}: {shell} -n fails:\n{text}");
    // SC2016 (`$` inside single quotes): every value a template prints is
    // quoted by construction, so a `$` in single quotes there is a literal
    // the profile meant (the runner's hostile-value test proves it stays one).
    let (ok, text) = run(Command::new("shellcheck")
        .args(["-s", shell, "-e", "SC2016"])
        .arg(&file));
    assert!(
        ok && text.is_empty(),
        "{what}: shellcheck finds:\n{text}\n--- script ---\n{script}"
    );
}

/// The commands of `runcmd`/`bootcmd`: strings run by /bin/sh, lists run
/// directly unless they are `[sh|bash, -c, SCRIPT, …]`.
fn commands(doc: &Value, key: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in doc[key].as_sequence().into_iter().flatten() {
        match item {
            Value::String(s) => out.push(("sh".to_string(), s.clone())),
            Value::Sequence(argv) => {
                let argv: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                if let [shell @ ("sh" | "bash"), "-c", script, ..] = argv.as_slice() {
                    out.push((shell.to_string(), script.to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_payload_passes_cloud_init_schema() {
    if !have("cloud-init") {
        return;
    }
    let library = fixture_library();
    let dir = tempfile::tempdir().unwrap();
    for name in profiles() {
        let compiled = bootforge::compile(&library, &name, &[]).unwrap();
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &compiled.cloud_config).unwrap();
        let (ok, text) = run(Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&file));
        assert!(
            ok && text.starts_with("Valid cloud-config"),
            "{name}: cloud-init schema says:\n{text}"
        );
    }
}

#[test]
fn every_script_passes_bash_n_and_shellcheck() {
    if !have("shellcheck") {
        return;
    }
    let library = fixture_library();
    let dir = tempfile::tempdir().unwrap();
    for name in profiles() {
        let compiled = bootforge::compile(&library, &name, &[]).unwrap();
        let mut checked = 0;
        for file in &compiled.files {
            if let Some(shell) = shell_of(&file.content) {
                check_script(
                    &format!("{name}: {}", file.path),
                    shell,
                    &file.content,
                    dir.path(),
                );
                checked += 1;
            }
        }
        for part in &compiled.parts {
            if let Some(shell) = shell_of(&part.content) {
                check_script(
                    &format!("{name}: part {}", part.filename),
                    shell,
                    &part.content,
                    dir.path(),
                );
                checked += 1;
            }
        }
        let doc: Value = serde_yaml_ng::from_str(&compiled.cloud_config).unwrap();
        for key in ["bootcmd", "runcmd"] {
            for (shell, script) in commands(&doc, key) {
                check_script(
                    &format!("{name}: {key} item"),
                    &shell,
                    &format!("#!/bin/{shell}\n{script}"),
                    dir.path(),
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "{name}: no script was found to check");
    }
}

#[test]
fn every_profile_launches_within_the_size_budget() {
    // The budget is on what EC2 receives; past the raw limit the payload
    // is gzipped and cloud-init decompresses it.
    let library = bootforge::Library::builtin();
    for name in library.profile_names() {
        let compiled = bootforge::compile(&library, name, &[]).unwrap();
        let payload = &compiled.payload;
        assert!(
            payload.bytes.len() <= bootforge::SIZE_BUDGET,
            "{name}: {} bytes launched ({} raw, gzip {})",
            payload.bytes.len(),
            payload.raw.len(),
            payload.gzip
        );
        // Compared as flags: the bytes themselves would flood the report.
        if payload.gzip {
            assert!(
                bootforge::gzip(&payload.raw) == payload.bytes,
                "{name}: what is launched is the raw user-data gzipped"
            );
        } else {
            assert!(payload.raw == payload.bytes, "{name}: launched = raw");
        }
    }
}

#[test]
fn the_manual_shows_the_celery_tasks_the_end_to_end_tests_run() {
    let page = std::fs::read_to_string(crate::root().join("docs/jobs.md")).unwrap();
    let task = std::fs::read_to_string(crate::root().join("examples/celery_tasks.py")).unwrap();
    assert!(
        page.contains(&format!("```python\n{task}```\n")),
        "docs/jobs.md's Celery tasks differ from examples/celery_tasks.py: copy the file into the page"
    );
    // And it is Python that compiles.
    let (ok, out) = run(Command::new("python3")
        .args([
            "-c",
            "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])",
        ])
        .arg(crate::root().join("examples/celery_tasks.py")));
    assert!(ok, "{out}");
}

/// Whether a payload file is a Python script (its shebang names python3).
fn is_python(content: &str) -> bool {
    content
        .lines()
        .next()
        .is_some_and(|l| l.starts_with("#!") && l.contains("python3"))
}

#[test]
fn every_python_line_the_payload_carries_runs_on_python_3_9() {
    // Amazon Linux 2023's python3 is 3.9: the helpers the runner calls must
    // need nothing newer (vermin: syntax, modules, functions).
    if !have("vermin") {
        return;
    }
    let library = fixture_library();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in profiles() {
        let compiled = bootforge::compile(&library, &name, &[]).unwrap();
        for file in compiled.files.iter().filter(|f| is_python(&f.content)) {
            let path = dir
                .path()
                .join(format!("{name}-{}.py", file.path.replace('/', "_")));
            std::fs::write(&path, &file.content).unwrap();
            let (ok, text) = run(Command::new("python3")
                .args(["-m", "py_compile"])
                .arg(&path));
            assert!(ok, "{name}: {} does not compile:\n{text}", file.path);
            let (ok, text) = run(Command::new("vermin")
                .args(["-t=3.9-", "--violations", "--eval-annotations", "--no-tips"])
                .arg(&path));
            assert!(
                ok,
                "{name}: {} needs a Python newer than 3.9:\n{text}",
                file.path
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} Python files were checked");
}
