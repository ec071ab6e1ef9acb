//! `check`: golden files compared byte for byte, diffs on drift, `--bless`.

use std::fs;
use std::path::Path;

use crate::{Test, contains, root};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `bootforge --profiles PROFILES check --golden GOLDEN [--bless]`.
fn check(profiles: &Path, golden: &Path, bless: bool) -> crate::Run {
    Test::new()
        .arg("--profiles")
        .arg(profiles)
        .arg("check")
        .args(bless.then_some("--bless"))
        .arg("--golden")
        .arg(golden)
        .run()
}

#[test]
fn check_passes_on_the_repository() {
    let run = Test::new().arg("check").run().success();
    assert!(run.stdout().is_empty(), "{}", run.stdout());
}

#[test]
fn golden_holds_every_profile() {
    for entry in fs::read_dir(root().join("profiles")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            root().join("golden").join(&name).is_file(),
            "golden/{name} is missing"
        );
    }
}

#[test]
fn a_changed_profile_drifts_with_a_diff_and_bless_rewrites() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    let profiles = tmp.path().join("profiles");
    copy_dir(&root().join("golden"), &golden);
    fs::create_dir_all(&profiles).unwrap();
    let text = fs::read_to_string(root().join("profiles/g6-quick.yaml")).unwrap();
    fs::write(
        profiles.join("g6-quick.yaml"),
        text.replace("timeout: 30m", "timeout: 45m"),
    )
    .unwrap();

    let run = check(&profiles, &golden, false).failure(1);
    let out = run.stdout();
    contains(
        &out,
        "g6-quick.yaml: profile `g6-quick` compiles to other bytes",
    );
    assert!(
        out.contains("-  - '2100'\n+  - '3000'\n"),
        "the dead-man's delay moves:\n{out}"
    );
    contains(&out, "-    TIMEOUT_S=1800\n+    TIMEOUT_S=2700\n");
    assert!(
        !out.contains("traffic-sign-gpu.yaml"),
        "an unchanged profile does not drift:\n{out}"
    );
    contains(&run.stderr(), "1 of 3 profiles drifted");

    // A stale file is drift too.
    fs::write(golden.join("gone.yaml"), "#cloud-config\n").unwrap();
    let run = check(&profiles, &golden, false).failure(1);
    contains(&run.stdout(), "gone.yaml: stale");

    check(&profiles, &golden, true).success();
    assert!(!golden.join("gone.yaml").exists());
    check(&profiles, &golden, false).success();
    let blessed = fs::read_to_string(golden.join("g6-quick.yaml")).unwrap();
    assert!(blessed.contains("TIMEOUT_S=2700"));
}

#[test]
fn a_missing_golden_file_is_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Test::new()
        .args(["check", "--golden"])
        .arg(tmp.path())
        .run()
        .failure(1);
    contains(&run.stdout(), "traffic-sign-gpu.yaml: missing");
}

#[test]
fn a_gzipped_payloads_golden_file_is_its_readable_user_data() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = tmp.path().join("golden");
    Test::with_fixtures()
        .args(["check", "--bless", "--golden"])
        .arg(&golden)
        .run()
        .success();
    let text = fs::read(golden.join("gzipped.yaml")).unwrap();
    // Text a reviewer reads, as cloud-init reads it once decompressed.
    assert!(
        text.starts_with(b"Content-Type: multipart/mixed"),
        "{text:?}"
    );
    let launched = Test::with_fixtures()
        .args(["compile", "gzipped", "--format", "payload"])
        .run()
        .success();
    let launched = &launched.output.stdout;
    assert_eq!(launched[..2], [0x1f, 0x8b], "gzip magic");
    assert!(
        &bootforge::gzip(&text) == launched,
        "the launched bytes are the golden file gzipped"
    );
}
