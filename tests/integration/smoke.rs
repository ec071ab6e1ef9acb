//! Smoke tests: the default profile's payload booted under real cloud-init
//! with systemd as PID 1 in a container, one test per scenario. They need
//! the Docker engine and the image `bootforge smoke image` builds
//! (scripts/test builds it).

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use crate::{Test, contains, root};

/// Past this, a boot that should have powered off is a failure: every
/// scenario ends within a minute here.
const BOOT_TIMEOUT: &str = "300";

/// Whether the engine answers and the image is there; the full run fails
/// when not, plain `cargo test` skips.
pub fn ready() -> bool {
    if !crate::have("docker") {
        return false;
    }
    let image = bootforge::smoke::image();
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

/// The EFS stand-in, once it stops answering, holds every operation as a
/// hard NFS mount whose server is gone: a signal its caller handles leaves
/// it waiting, SIGKILL ends the wait, also for a request the server had
/// read when it stopped (stopping the server process would hold that one
/// past SIGKILL, which NFS never does).
#[test]
fn the_efs_stand_in_hangs_as_a_hard_nfs_mount() {
    if !ready() {
        return;
    }
    let script = root().join("tests/fixtures/smoke/efs_hangs_as_nfs.sh");
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--device",
            "/dev/fuse",
            "--cap-add",
            "SYS_ADMIN",
        ])
        .arg("-v")
        .arg(format!("{}:/efs_hangs_as_nfs.sh:ro", script.display()))
        .args(["--entrypoint", "bash", &bootforge::smoke::image()])
        .arg("/efs_hangs_as_nfs.sh")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rules: Vec<&str> = text.lines().filter(|l| l.contains(": ")).collect();
    assert_eq!(
        rules.len(),
        11,
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for rule in rules {
        assert!(rule.ends_with(": yes"), "{rule}\n{text}");
    }
}

/// Runs `smoke traffic-sign-gpu --scenario SCENARIO EXTRA…`, asserts every
/// check passed and the container is gone, and returns the report.
fn smoke_with(scenario: &str, extra: &[&str]) -> Json {
    let run = Test::new()
        .args([
            "smoke",
            "traffic-sign-gpu",
            "--json",
            "--boot-timeout",
            BOOT_TIMEOUT,
            "--scenario",
            scenario,
        ])
        .args(extra)
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
    eprintln!("{scenario}: timings {}", report["timings"]);
    report
}

fn smoke(scenario: &str) -> Json {
    smoke_with(scenario, &[])
}

/// The names of the checks a report made.
fn checked(report: &Json) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// The SHA-256 of what EC2 receives for the default profile: its golden
/// file, gzipped when the payload is (the golden file is the readable
/// user-data before compression).
fn golden_sha256() -> String {
    use sha2::Digest as _;
    let golden = std::fs::read(root().join("golden/traffic-sign-gpu.yaml")).unwrap();
    let compiled =
        bootforge::compile(&bootforge::Library::builtin(), "traffic-sign-gpu", &[]).unwrap();
    assert_eq!(
        compiled.payload.raw, golden,
        "golden/ is stale: bootforge check"
    );
    let bytes = if compiled.payload.gzip {
        bootforge::gzip(&golden)
    } else {
        golden
    };
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The checks every boot makes, whatever its scenario.
const EVERY_BOOT: &[&str] = &[
    "dead-man's switch armed",
    "job runner ran",
    "on the EFS",
    "powered off",
    "cloud-init clean",
];

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
    let names = checked(&report);
    for name in EVERY_BOOT.iter().chain(&[
        "status.json",
        "the trap powered off, first and once",
        "ran as the job's user",
        "pip ran",
        "powered off soon after the job",
    ]) {
        assert!(
            names.iter().any(|n| n == name),
            "no check {name}: {names:?}"
        );
    }
    assert_eq!(report["status"]["outcome"], "succeeded");
    assert_eq!(report["status"]["gpu"]["name"], "NVIDIA L40S");
    // Instance id and type come from cloud-init's instance data (the NoCloud
    // meta-data here), not from tags.
    let id = report["status"]["instance_id"].as_str().unwrap();
    assert!(id.starts_with("i-0") && id.len() == 19, "{id}");
    assert_eq!(report["status"]["instance_type"], "g6e.xlarge");
    assert!(report["timings"]["cloud_init_to_pipeline"].is_f64());
    assert!(report["timings"]["pipeline_end_to_power_off"].is_f64());
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
fn hang_is_killed_and_powered_off_within_kill_after() {
    if !ready() {
        return;
    }
    let report = smoke("hang");
    assert_eq!(report["status"]["outcome"], "timed_out");
    assert!(checked(&report).contains(&"powered off soon after the deadline".to_string()));
    assert!(report["timings"]["deadline_to_power_off"].as_f64().unwrap() <= 3.0 + 15.0);
}

#[test]
fn no_requirements_never_calls_pip() {
    if !ready() {
        return;
    }
    let report = smoke("no-requirements");
    assert_eq!(report["payload_sha256"], golden_sha256());
    assert!(checked(&report).contains(&"pip never ran".to_string()));
}

#[test]
fn bad_requirements_stop_the_job() {
    if !ready() {
        return;
    }
    let report = smoke("bad-requirements");
    assert_eq!(report["status"]["outcome"], "deps_failed");
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
fn no_gpu_stops_at_the_gpu_phase() {
    if !ready() {
        return;
    }
    let report = smoke("no-gpu");
    let phases: Vec<&String> = report["status"]["phases"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(phases, ["mount", "deps", "gpu"]);
}

#[test]
fn a_background_child_neither_holds_the_job_nor_survives_it() {
    if !ready() {
        return;
    }
    let report = smoke("background-child");
    assert!(checked(&report).contains(&"the leftover process ended with the job".to_string()));
    assert!(
        report["timings"]["pipeline_end_to_power_off"]
            .as_f64()
            .unwrap()
            <= 5.0 + 15.0
    );
}

#[test]
fn a_killed_runner_still_powers_off() {
    if !ready() {
        return;
    }
    let report = smoke("runner-killed");
    let names = checked(&report);
    assert!(names.contains(&"the power_state backstop powered off".to_string()));
    assert!(names.contains(&"no status".to_string()));
}

#[test]
fn a_stale_run_is_kept_aside_and_never_reported() {
    if !ready() {
        return;
    }
    let report = smoke("stale-run");
    assert_ne!(report["status"]["instance_id"], "i-0earlier0000000");
    assert!(checked(&report).contains(&"the earlier run's files kept aside".to_string()));
}

#[test]
fn the_log_file_system_keeps_the_status_when_another_mount_fails() {
    if !ready() {
        return;
    }
    let report = smoke("log-fs-only");
    assert_eq!(report["status"]["outcome"], "mount_failed");
}

#[test]
fn an_efs_that_hangs_at_the_end_cannot_hold_the_instance() {
    if !ready() {
        return;
    }
    let report = smoke("efs-hangs-at-finalize");
    assert_eq!(report["status"]["outcome"], "succeeded");
    assert!(
        report["timings"]["pipeline_end_to_power_off"]
            .as_f64()
            .unwrap()
            <= 60.0 + 60.0
    );
}

/// The checks a shutdown from outside or a spot interruption makes.
const INTERRUPTED: &[&str] = &[
    "status.json",
    "SIGTERM reached the pipeline first",
    "a checkpoint on the EFS",
];

fn interrupted_from_outside(ordering: &str) {
    let report = smoke_with("interrupted", &["--ordering", ordering]);
    assert_eq!(report["ordering"], ordering);
    let names = checked(&report);
    for name in EVERY_BOOT.iter().chain(INTERRUPTED).chain(&[
        "powered off from outside, never by the backstop",
        "powered off within kill_after + 30s of the shutdown",
    ]) {
        assert!(
            names.iter().any(|n| n == name),
            "no check {name}: {names:?}"
        );
    }
    // On the EFS folder, not only on the console: the runner was stopped
    // before the file system it writes to was unmounted.
    assert_eq!(report["status"]["outcome"], "interrupted");
    assert_eq!(report["status"]["exit_code"], 143);
    eprintln!(
        "{ordering}: shutdown from outside -> power-off {}s",
        report["timings"]["intervention_to_power_off"]
    );
}

fn spot_interruption(ordering: &str) {
    let report = smoke_with("spot-interruption", &["--ordering", ordering]);
    let names = checked(&report);
    for name in EVERY_BOOT.iter().chain(INTERRUPTED).chain(&[
        "the trap powered off, first and once",
        "powered off before the spot action",
        "interrupted on the EFS within 30s of the notice",
        "the status carries the notice",
    ]) {
        assert!(
            names.iter().any(|n| n == name),
            "no check {name}: {names:?}"
        );
    }
    assert_eq!(report["status"]["notice"]["action"], "terminate");
    eprintln!(
        "{ordering}: spot notice -> interrupted on the EFS {}s, -> power-off {}s",
        report["timings"]["notice_to_efs_status"], report["timings"]["intervention_to_power_off"]
    );
}

#[test]
fn a_shutdown_from_outside_leaves_interrupted_on_the_efs() {
    if !ready() {
        return;
    }
    interrupted_from_outside("debian");
}

#[test]
fn a_spot_notice_checkpoints_and_leaves_interrupted_on_the_efs() {
    if !ready() {
        return;
    }
    spot_interruption("debian");
}

/// Amazon Linux 2023 orders cloud-init's units after sysinit.target, and
/// its power_state does nothing: every scenario about shutting down holds
/// there too, the gzipped payload booting as it is.
#[test]
fn the_shutdown_scenarios_hold_under_amazon_linux_2023s_ordering() {
    if !ready() {
        return;
    }
    for scenario in ["ok", "hang", "background-child"] {
        let report = smoke_with(scenario, &["--ordering", "al2023"]);
        assert_eq!(report["ordering"], "al2023");
    }
    interrupted_from_outside("al2023");
    spot_interruption("al2023");
}

/// An EFS folder laid out like the seed's: the stand-in pipeline under
/// app/, with requirements the image's wheelhouse serves.
fn own_efs(dir: &Path) {
    own_efs_with(dir, "bootforge_fixture==1.0\n", PIPELINE);
}

const PIPELINE: &str = include_str!("../fixtures/smoke/simulate_pipeline.sh");

fn own_efs_with(dir: &Path, requirements: &str, pipeline: &str) {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("simulate_pipeline.sh"), pipeline).unwrap();
    std::fs::write(app.join("requirements_gpu.txt"), requirements).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    for d in [dir, &app] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    std::fs::set_permissions(
        app.join("simulate_pipeline.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

/// The job's log in the user's folder.
fn job_log(efs: &Path, job: &str) -> String {
    std::fs::read_to_string(efs.join("bootforge/jobs").join(job).join("job.log")).unwrap()
}

/// The cache's entries in the user's folder, by name (the tools aside).
fn cache_entries(efs: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(efs.join("bootforge/cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tools")
        .collect();
    names.sort();
    names
}

/// The one entry of the cache is whole: its image matches its checksum.
fn the_entry_is_whole(efs: &Path) -> std::path::PathBuf {
    use sha2::Digest as _;
    let names = cache_entries(efs);
    assert_eq!(names.len(), 1, "one entry, nothing left aside: {names:?}");
    let entry = efs.join("bootforge/cache").join(&names[0]);
    let image = std::fs::read(entry.join("env.sqfs")).unwrap();
    let sum: String = sha2::Sha256::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        std::fs::read_to_string(entry.join("env.sha256")).unwrap(),
        format!("{sum}  env.sqfs\n")
    );
    entry
}

#[test]
fn a_users_own_folder_is_the_efs_and_a_second_job_mounts_its_cached_environment() {
    if !ready() {
        return;
    }
    let efs = tempfile::tempdir().unwrap();
    own_efs(efs.path());
    let efs_arg = efs.path().display().to_string();
    let first = smoke_with("ok", &["--efs", &efs_arg]);
    assert_eq!(first["status"]["outcome"], "succeeded");
    assert_eq!(first["status"]["environment"]["how"], "installed");
    // The job wrote into the user's folder, where the host would read it.
    let status =
        std::fs::read_to_string(efs.path().join("bootforge/jobs/manual/status.json")).unwrap();
    assert!(status.contains("\"outcome\": \"succeeded\""), "{status}");
    // Their own files are untouched.
    assert_eq!(
        std::fs::read_to_string(efs.path().join("app/requirements_gpu.txt")).unwrap(),
        "bootforge_fixture==1.0\n"
    );
    assert!(!efs.path().join("app/smoke-mode").exists());
    let entry = the_entry_is_whole(efs.path());

    // A cache hit: the image mounted read-only (a kernel loop mount under
    // systemd), unmounted once the pipeline has ended.
    let second = smoke_with("ok", &["--efs", &efs_arg]);
    let log = job_log(efs.path(), "manual");
    contains(&log, "restored /var/lib/bootforge/venv from ");
    contains(&log, "(mounted read-only)");
    assert_eq!(second["status"]["environment"]["how"], "restored");
    assert_eq!(
        second["status"]["environment"]["files"],
        first["status"]["environment"]["files"]
    );
    let (ended, unmounted) = (
        log.find("phase run: done").unwrap(),
        log.find("unmounted /var/lib/bootforge/venv").unwrap(),
    );
    assert!(ended < unmounted, "{log}");
    assert!(!log.contains("installing "), "{log}");
    // The first run's files were set aside, not overwritten.
    let first_id = first["status"]["instance_id"].as_str().unwrap();
    assert_ne!(second["status"]["instance_id"], first_id);
    let kept = efs.path().join("bootforge/jobs/manual/runs").join(first_id);
    assert_eq!(
        std::fs::read_to_string(kept.join("status.json")).unwrap(),
        status
    );

    // A damaged entry: detected, rebuilt in its place.
    let image = entry.join("env.sqfs");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::write(&image, &bytes[..bytes.len() / 2]).unwrap();
    let third = smoke_with("ok", &["--efs", &efs_arg]);
    contains(
        &job_log(efs.path(), "manual"),
        "is damaged or partial: rebuilding it",
    );
    assert_eq!(third["status"]["environment"]["how"], "rebuilt");
    assert_eq!(the_entry_is_whole(efs.path()), entry);
    // A figure for the record, not a timed assertion.
    eprintln!(
        "deps phase: first job {}s, second (mounted) {}s, damaged entry {}s",
        first["timings"]["deps_phase"],
        second["timings"]["deps_phase"],
        third["timings"]["deps_phase"]
    );
}

/// Two jobs at once on one folder, both filling the same entry (the EFS
/// stand-in holds the renames so that they overlap): one wins, neither
/// breaks, and a third job mounts the winner's.
#[test]
fn two_jobs_filling_one_cache_entry_at_once_leave_one_whole_entry() {
    if !ready() {
        return;
    }
    let efs = tempfile::tempdir().unwrap();
    own_efs(efs.path());
    let efs_arg = efs.path().display().to_string();
    let boots: Vec<_> = ["race-a", "race-b"]
        .into_iter()
        .map(|job| {
            let efs_arg = efs_arg.clone();
            std::thread::spawn(move || {
                smoke_with(
                    "fill-race",
                    &["--efs", &efs_arg, "--set", &format!("job_id={job}")],
                )
            })
        })
        .collect();
    for boot in boots {
        let report = boot.join().unwrap();
        assert_eq!(report["status"]["outcome"], "succeeded");
        assert_eq!(report["status"]["environment"]["how"], "installed");
    }
    let logs = [job_log(efs.path(), "race-a"), job_log(efs.path(), "race-b")];
    let won = logs
        .iter()
        .filter(|l| l.contains("] cached it in "))
        .count();
    let lost = logs
        .iter()
        .filter(|l| l.contains("first: kept theirs"))
        .count();
    assert_eq!((won, lost), (1, 1), "{logs:#?}");
    the_entry_is_whole(efs.path());
    let third = smoke_with("ok", &["--efs", &efs_arg, "--set", "job_id=race-c"]);
    assert_eq!(third["status"]["environment"]["how"], "restored");
}

#[test]
fn without_uv_to_be_had_pip_installs_the_requirements() {
    if !ready() {
        return;
    }
    let report = smoke("no-uv");
    assert!(checked(&report).iter().any(|n| n == "pip stood in for uv"));
    assert_eq!(report["status"]["environment"]["how"], "installed");
}

#[test]
fn scenarios_that_need_the_stand_in_refuse_a_users_folder() {
    let efs = tempfile::tempdir().unwrap();
    let run = Test::new()
        .args(["smoke", "traffic-sign-gpu", "--scenario", "hang", "--efs"])
        .arg(efs.path())
        .run()
        .failure(2);
    contains(&run.stderr(), "needs bootforge's stand-in pipeline");
    contains(
        &run.stderr(),
        "with --efs, run ok, fill-race, no-efs, no-gpu",
    );
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

/// The benchmark's pipeline: its first import of the stack, timed from the
/// shell (the interpreter's start included).
const IMPORT_PIPELINE: &str = r#"#!/bin/bash
start=$(date +%s.%N)
python -c 'import numpy, pandas, scipy.ndimage, PIL.Image, cv2'
rc=$?
end=$(date +%s.%N)
echo "$start $end" >"$OUTPUT_DIR/first-import"
exit $rc
"#;

/// One benchmark boot: the deps phase, the first import, the EFS bytes.
fn bench_boot(efs: &Path, extra: &[&str]) -> (f64, f64, u64, u64, String) {
    let efs_arg = efs.display().to_string();
    let mut args = vec![
        "--efs",
        &efs_arg,
        "--set",
        "snippets.requirements.timeout_minutes=30",
    ];
    args.extend_from_slice(extra);
    let report = smoke_with("ok", &args);
    assert_eq!(report["status"]["outcome"], "succeeded", "{report:#}");
    let import =
        std::fs::read_to_string(efs.join("bootforge/jobs/manual/output/first-import")).unwrap();
    let times: Vec<f64> = import
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    (
        report["timings"]["deps_phase"].as_f64().unwrap(),
        times[1] - times[0],
        report["efs_io"]["read"].as_u64().unwrap(),
        report["efs_io"]["written"].as_u64().unwrap(),
        format!(
            "{} files, {} bytes",
            report["status"]["environment"]["files"], report["status"]["environment"]["bytes"]
        ),
    )
}

/// The requirements benchmark on a real computer-vision stack (numpy,
/// pandas, scipy, pillow, opencv; the smoke image's wheelhouse): the deps
/// phase of a first job with pip and with uv, of a second job (the cache
/// entry mounted) and of a job whose entry is damaged; the pipeline's first
/// import; the EFS bytes, in seconds at the EFS's burst and baseline
/// throughputs. Figures, never assertions on time:
/// `cargo nextest run --release --run-ignored only -E 'test(requirements_benchmark)' --no-capture`.
#[test]
#[ignore = "a benchmark: minutes of installs; run it on purpose"]
fn requirements_benchmark_on_a_computer_vision_stack() {
    if !ready() {
        return;
    }
    let requirements =
        std::fs::read_to_string(root().join("src/smoke/recipe/requirements-cv.txt")).unwrap();
    let mut rows = Vec::new();
    let pip = tempfile::tempdir().unwrap();
    own_efs_with(pip.path(), &requirements, IMPORT_PIPELINE);
    rows.push((
        "first job, pip",
        bench_boot(
            pip.path(),
            &["--set", "snippets.requirements.installer=pip"],
        ),
    ));
    let efs = tempfile::tempdir().unwrap();
    own_efs_with(efs.path(), &requirements, IMPORT_PIPELINE);
    rows.push(("first job, uv (the default)", bench_boot(efs.path(), &[])));
    rows.push(("second job, cache hit", bench_boot(efs.path(), &[])));
    let entry = the_entry_is_whole(efs.path());
    let image = entry.join("env.sqfs");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::write(&image, &bytes[..bytes.len() - 4096]).unwrap();
    rows.push(("damaged entry, rebuilt", bench_boot(efs.path(), &[])));

    const MIB: f64 = 1024.0 * 1024.0;
    eprintln!("\nrequirements benchmark ({})", rows[0].1.4);
    eprintln!(
        "{:<28} {:>7} {:>8} {:>12} {:>12} {:>10} {:>10}",
        "job", "deps s", "import s", "EFS read", "EFS written", "@100MiB/s", "@2.4MiB/s"
    );
    for (name, (deps, import, read, written, _)) in &rows {
        let io = (read + written) as f64;
        eprintln!(
            "{name:<28} {deps:>7.2} {import:>8.2} {read:>12} {written:>12} {:>10.1} {:>10.1}",
            io / (100.0 * MIB),
            io / (2.4 * MIB)
        );
    }
    let (pip_deps, hit) = (rows[0].1.0, &rows[2].1);
    eprintln!(
        "second job's deps + first import: {:.2}s, {:.3} of the first job's deps with pip",
        hit.0 + hit.1,
        (hit.0 + hit.1) / pip_deps
    );
    // The EFS throughput below which mounting the cached image (its bytes
    // read from the EFS) takes longer than installing with pip.
    let local = hit.0 + hit.1 - rows[0].1.1;
    if pip_deps > local {
        eprintln!(
            "crossover: below {:.1} MiB/s of EFS throughput, pip from the index beats the cache",
            hit.2 as f64 / MIB / (pip_deps - local)
        );
    }
}
