//! Smoke tests: the default profile's payload booted under real cloud-init
//! in a container, one test per scenario. They need the Docker engine and
//! the image `bootforge smoke image` builds (scripts/test builds it).

use std::process::Command;

use serde_json::Value as Json;

use crate::{Test, contains, root};

/// Whether the engine answers and the image is there; the full run fails
/// when not, plain `cargo test` skips.
fn ready() -> bool {
    if !crate::have("docker") {
        return false;
    }
    let image = format!("bootforge-smoke:{}", bootforge::smoke::image_tag());
    let there = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    if !there {
        if std::env::var_os("BOOTFORGE_REQUIRE_ALL").is_some() {
            panic!("the smoke image {image} is missing: `bootforge smoke image` builds it");
        }
        eprintln!("skipped: the smoke image {image} is not built (`bootforge smoke image`)");
    }
    there
}

fn smoke(scenario: &str) -> Json {
    let run = Test::new()
        .args([
            "smoke",
            "traffic-sign-gpu",
            "--json",
            "--scenario",
            scenario,
        ])
        .run();
    let reports: Json = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout(), run.stderr()));
    let report = reports[0].clone();
    let failed: Vec<&Json> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] != true)
        .collect();
    assert!(
        failed.is_empty(),
        "{scenario}: failed checks {failed:#?}\n{report:#}"
    );
    assert_eq!(run.code(), 0);
    // The container is gone, passed or not.
    let id = report["container"].as_str().unwrap();
    let inspect = Command::new("docker")
        .args(["container", "inspect", id])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "container {id} was left behind");
    report
}

fn golden_sha256() -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(root().join("golden/traffic-sign-gpu.yaml")).unwrap();
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn ok_boots_the_golden_payload() {
    if !ready() {
        return;
    }
    let report = smoke("ok");
    assert_eq!(
        report["payload_sha256"],
        golden_sha256(),
        "the payload booted is the one launched"
    );
    assert_eq!(report["status"]["outcome"], "succeeded");
    assert_eq!(report["status"]["gpu"]["name"], "NVIDIA L40S");
    // Instance id and type come from cloud-init's instance data (the NoCloud
    // meta-data here), not from tags.
    assert!(
        report["status"]["instance_id"]
            .as_str()
            .unwrap()
            .starts_with("i-smoke")
    );
    assert_eq!(report["status"]["instance_type"], "g6e.xlarge");
    assert!(report["status"]["phases"]["run"].is_u64());
    assert!(report["timings"]["cloud_init_to_pipeline"].is_f64());
    assert!(report["timings"]["pipeline_end_to_shutdown"].is_f64());
}

#[test]
fn fail_keeps_the_exit_code() {
    if !ready() {
        return;
    }
    let report = smoke("fail");
    assert_eq!(report["payload_sha256"], golden_sha256());
    assert_eq!(report["status"]["exit_code"], 3);
}

#[test]
fn hang_is_killed_and_finalized() {
    if !ready() {
        return;
    }
    let report = smoke("hang");
    assert_eq!(report["status"]["outcome"], "timed_out");
    assert!(
        report["timings"]["deadline_to_shutdown"].is_f64(),
        "{report:#}"
    );
}

#[test]
fn no_requirements_skips_the_step() {
    if !ready() {
        return;
    }
    let report = smoke("no-requirements");
    assert_eq!(report["payload_sha256"], golden_sha256());
}

#[test]
fn bad_requirements_stop_the_job() {
    if !ready() {
        return;
    }
    let report = smoke("bad-requirements");
    assert_eq!(
        report["status"]["phases"]
            .as_object()
            .unwrap()
            .keys()
            .next_back()
            .unwrap(),
        "deps"
    );
}

#[test]
fn no_efs_reports_on_the_console_and_shuts_down() {
    if !ready() {
        return;
    }
    let report = smoke("no-efs");
    assert_eq!(report["status"]["outcome"], "mount_failed");
}

#[test]
fn no_gpu_is_gpu_missing() {
    if !ready() {
        return;
    }
    smoke("no-gpu");
}

#[test]
fn a_missing_engine_is_a_clear_error() {
    if !crate::have("docker") {
        return;
    }
    let run = Test::new()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["smoke", "traffic-sign-gpu", "--scenario", "ok"])
        .run()
        .failure(2);
    assert!(
        run.stderr()
            .contains("error[environment]: the Docker engine does not answer"),
        "{}",
        run.stderr()
    );
    contains(&run.stderr(), "start it");
}

#[test]
fn an_unknown_scenario_is_a_usage_error() {
    let run = Test::new()
        .args(["smoke", "traffic-sign-gpu", "--scenario", "explode"])
        .run()
        .failure(2);
    contains(&run.stderr(), "the scenarios are ok, fail, hang");
}
