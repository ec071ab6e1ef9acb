//! The generated job runner, taken from the compiled payload and executed on
//! the host with stand-ins first on PATH (mount, mountpoint, getent, pip,
//! nvidia-smi, shutdown, cloud-init; the real `timeout`), once per outcome.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::{fixtures, have};

/// A part of every path, so that every run also proves the quoting.
const HOSTILE_DIR: &str = "job root 'q' $(touch PWNED) `touch PWNED` *";

/// One run of the runner in its own temporary root.
struct Job {
    /// Handed to the [`Finished`] run, which outlives a temporary `Job`.
    tmp: Option<tempfile::TempDir>,
    /// The temporary directory itself (the runner's working directory).
    base: PathBuf,
    /// Where the "EFS" and everything else lives.
    root: PathBuf,
    sets: Vec<String>,
    env: BTreeMap<String, String>,
}

struct Finished {
    _tmp: Option<tempfile::TempDir>,
    stdout: String,
    took: Duration,
    base: PathBuf,
    root: PathBuf,
    code: i32,
}

impl Job {
    fn new() -> Job {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let root = base.join(HOSTILE_DIR);
        let app = root.join("app");
        fs::create_dir_all(&app).unwrap();
        fs::create_dir_all(root.join("efs")).unwrap();
        for script in ["ok.sh", "fail.sh", "hang.sh"] {
            fs::copy(fixtures().join("pipelines").join(script), app.join(script)).unwrap();
        }
        fs::write(app.join("requirements_gpu.txt"), "numpy==1.26.4\n").unwrap();
        fs::write(root.join("cloud-init-output.log"), "boot log\n").unwrap();
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let r = root.display().to_string();
        let sets = vec![
            format!("job.user={}", user.trim()),
            format!("job.log_dir={r}/efs/bootforge/jobs"),
            format!("job.state_dir={r}/state"),
            "job_id=run-7".to_string(),
            format!(
                "snippets.efs-mount.mounts=[{{fs_id: fs-0fdfeb8ca8304e991, mount_point: {} }}, {{fs_id: fs-0fdfeb8ca8304e991, path: /app, mount_point: {} }}]",
                json(&format!("{r}/efs")),
                json(&format!("{r}/app"))
            ),
            "snippets.efs-mount.dns_wait_seconds=2".to_string(),
            "snippets.gpu-ready.wait_seconds=0".to_string(),
            format!("snippets.requirements.file={r}/app/requirements_gpu.txt"),
            format!("snippets.pipeline.script={r}/app/ok.sh"),
            format!("snippets.pipeline.workdir={r}/app"),
            format!("snippets.shutdown-trap.cloud_init_log={r}/cloud-init-output.log"),
        ];
        Job {
            tmp: Some(tmp),
            base,
            root,
            sets,
            env: BTreeMap::new(),
        }
    }

    fn set(&mut self, set: impl Into<String>) -> &mut Job {
        self.sets.push(set.into());
        self
    }

    fn env(&mut self, k: &str, v: &str) -> &mut Job {
        self.env.insert(k.to_string(), v.to_string());
        self
    }

    fn script(&mut self, name: &str) -> &mut Job {
        let r = self.root.display().to_string();
        self.set(format!("snippets.pipeline.script={r}/app/{name}"))
    }

    fn compile(&self) -> bootforge::Compiled {
        let overrides: Vec<bootforge::Override> = self
            .sets
            .iter()
            .map(|s| bootforge::Override::parse(s).unwrap())
            .collect();
        bootforge::compile(
            &bootforge::Library::builtin(),
            "traffic-sign-gpu",
            &overrides,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn run(&mut self) -> Finished {
        let compiled = self.compile();
        let runner = compiled
            .files
            .iter()
            .find(|f| f.path == "/usr/local/sbin/bootforge-job")
            .expect("the payload writes the job runner");
        let path = self.base.join("bootforge-job");
        fs::write(&path, &runner.content).unwrap();
        let standins = fixtures().join("standins");
        let start = Instant::now();
        let out = Command::new("bash")
            .arg(&path)
            .current_dir(&self.base)
            .env(
                "PATH",
                format!("{}:{}", standins.display(), std::env::var("PATH").unwrap()),
            )
            .env("STANDIN_DIR", self.base.join("standin"))
            .envs(&self.env)
            .output()
            .unwrap();
        Finished {
            _tmp: self.tmp.take(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            took: start.elapsed(),
            base: self.base.clone(),
            root: self.root.clone(),
            code: out.status.code().unwrap_or(-1),
        }
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

impl Finished {
    fn job_dir(&self) -> PathBuf {
        self.root.join("efs/bootforge/jobs/run-7")
    }

    fn local_dir(&self) -> PathBuf {
        self.root.join("state/jobs/run-7")
    }

    fn status_in(&self, dir: &Path) -> Json {
        let text = fs::read_to_string(dir.join("status.json")).unwrap_or_else(|e| {
            panic!("no status.json in {}: {e}\n{}", dir.display(), self.stdout)
        });
        serde_json::from_str(&text).unwrap()
    }

    fn status(&self) -> Json {
        self.status_in(&self.job_dir())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.job_dir().join("job.log")).unwrap()
    }

    fn calls(&self, tool: &str) -> Vec<String> {
        fs::read_to_string(self.base.join("standin/calls.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split('\t').next() == Some(tool))
            .map(str::to_string)
            .collect()
    }

    /// What every run must show, whatever its outcome.
    fn assert_common(&self, outcome: &str, exit_code: i64) {
        let status = self.status_in(&self.local_dir());
        assert_eq!(status["outcome"], outcome, "{}", self.stdout);
        assert_eq!(status["exit_code"], exit_code, "{}", self.stdout);
        assert_eq!(status["job_id"], "run-7");
        assert_eq!(status["profile"], "traffic-sign-gpu");
        assert_eq!(status["instance_id"], "i-0123456789abcdef0");
        assert_eq!(status["instance_type"], "g6e.xlarge");
        assert!(status["started_at"].as_str().unwrap().ends_with('Z'));
        let console = format!(
            "bootforge-status: {}",
            serde_json::to_string(&status).unwrap()
        );
        let printed = self
            .stdout
            .lines()
            .find(|l| l.starts_with("bootforge-status: "))
            .expect("status on the console");
        let printed: Json =
            serde_json::from_str(printed.trim_start_matches("bootforge-status: ")).unwrap();
        assert_eq!(printed, status, "{console}");
        assert_eq!(
            self.calls("shutdown"),
            [format!("shutdown\t-h\tnow\tbootforge: job run-7 {outcome}")],
            "the trap shuts down exactly once"
        );
        assert_eq!(self.code, exit_code as i32);
        assert!(
            !self.base.join("PWNED").exists(),
            "a path was executed as code"
        );
        assert!(
            !self.root.join("app/PWNED").exists(),
            "a path was executed as code"
        );
        assert!(
            fs::read_dir(self.local_dir()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("tmp")),
            "the temporary status file is renamed away"
        );
    }
}

fn phases(status: &Json) -> Vec<String> {
    status["phases"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn succeeded() {
    if !have("bash") {
        return;
    }
    let done = Job::new().run();
    done.assert_common("succeeded", 0);
    let status = done.status();
    assert_eq!(phases(&status), ["mount", "deps", "gpu", "run"]);
    assert_eq!(status["gpu"]["name"], "NVIDIA L40S");
    assert_eq!(status["gpu"]["driver"], "550.127.05");
    assert_eq!(
        status["log"],
        done.job_dir().join("job.log").display().to_string()
    );
    let log = done.log();
    for line in [
        "phase mount: start",
        "mounted fs-0fdfeb8ca8304e991:/app on",
        "phase deps: start",
        "installing ",
        "Successfully installed stand-in-package-1.0",
        "GPU ready after 0s: NVIDIA L40S, driver 550.127.05",
        "JOB_ID=run-7",
        "no newline at the end",
        "job succeeded (exit code 0)",
    ] {
        assert!(log.contains(line), "the log lacks {line:?}:\n{log}");
    }
    // Every line of the log is timestamped, the early ones (before the mount) included.
    let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ").unwrap();
    assert!(log.lines().all(|l| stamp.is_match(l)), "{log}");
    assert!(
        log.lines().next().unwrap().contains("starts; deadline in"),
        "{log}"
    );
    assert_eq!(
        fs::read_to_string(done.job_dir().join("output/result.txt")).unwrap(),
        "run-7\n"
    );
    assert_eq!(
        fs::read_to_string(done.job_dir().join("cloud-init-output.log")).unwrap(),
        "boot log\n"
    );
    // The pipeline's output also reached the console.
    assert!(
        done.stdout.contains("pipeline starts in "),
        "{}",
        done.stdout
    );
    // NFS 4.1 with AWS's options, as amazon-efs-utils is absent here.
    let mounts = done.calls("mount");
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert!(mounts[0].starts_with(
        "mount\t-t\tnfs4\t-o\tnfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport\tfs-0fdfeb8ca8304e991.efs.us-east-2.amazonaws.com:/\t"
    ), "{mounts:?}");
    assert!(done.calls("python3")[0].contains("-m\tpip\tinstall\t--no-input\t-r\t"));
}

#[test]
fn failed_keeps_the_exit_code() {
    if !have("bash") {
        return;
    }
    let done = Job::new().script("fail.sh").run();
    done.assert_common("failed", 3);
    assert_eq!(done.status()["message"], "the pipeline exited with code 3");
    assert!(done.log().contains("pipeline fails on purpose"));
}

#[test]
fn timed_out_kills_a_pipeline_that_ignores_sigterm_within_the_grace() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .script("hang.sh")
        .set("job.timeout=4s")
        .set("job.kill_after=2s")
        .run();
    done.assert_common("timed_out", 137);
    let log = done.log();
    assert!(
        log.contains("SIGTERM ignored"),
        "timeout sent SIGTERM first:\n{log}"
    );
    assert!(log.contains("then SIGTERM, SIGKILL 2s later"), "{log}");
    // Budget 4 s from the runner's start, then 2 s to SIGKILL: about 6 s in all.
    assert!(done.took < Duration::from_secs(20), "took {:?}", done.took);
}

#[test]
fn mount_failed_is_bounded_and_reaches_the_console() {
    if !have("bash") {
        return;
    }
    let done = Job::new().env("STANDIN_DNS", "fail").run();
    done.assert_common("mount_failed", 1);
    assert!(
        !done.job_dir().exists(),
        "nothing may be written where the EFS should be"
    );
    let status = done.status_in(&done.local_dir());
    assert_eq!(phases(&status), ["mount"]);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("did not resolve within 2s"),
        "{status}"
    );
    assert!(done.calls("mount").is_empty(), "no mount without DNS");
    assert!(done.took < Duration::from_secs(20), "took {:?}", done.took);
}

#[test]
fn mount_retries_then_fails() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .env("STANDIN_MOUNT", "fail")
        .set("snippets.efs-mount.attempts=2")
        .run();
    done.assert_common("mount_failed", 1);
    assert_eq!(done.calls("mount").len(), 2, "one retry");
    assert!(done.stdout.contains("retrying in 2s"), "{}", done.stdout);
}

#[test]
fn deps_failed() {
    if !have("bash") {
        return;
    }
    let done = Job::new().env("STANDIN_PIP", "fail").run();
    done.assert_common("deps_failed", 1);
    assert_eq!(phases(&done.status()), ["mount", "deps"]);
    assert!(
        done.log().contains("Could not find a version"),
        "{}",
        done.log()
    );
}

#[test]
fn deps_failure_can_be_let_through() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .env("STANDIN_PIP", "fail")
        .set("snippets.requirements.on_failure=continue")
        .run();
    done.assert_common("succeeded", 0);
    assert!(done.log().contains("going on (on_failure: continue)"));
}

#[test]
fn no_requirements_file_skips_the_step() {
    if !have("bash") {
        return;
    }
    let mut job = Job::new();
    fs::remove_file(job.root.join("app/requirements_gpu.txt")).unwrap();
    let done = job.run();
    done.assert_common("succeeded", 0);
    assert!(
        done.log().contains("nothing to install, step skipped"),
        "{}",
        done.log()
    );
    assert!(done.calls("python3").is_empty());
}

#[test]
fn gpu_missing() {
    if !have("bash") {
        return;
    }
    let done = Job::new().env("STANDIN_GPU", "absent").run();
    done.assert_common("gpu_missing", 1);
    assert_eq!(phases(&done.status()), ["mount", "deps", "gpu"]);
}

#[test]
fn an_optional_gpu_lets_the_job_run() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .env("STANDIN_GPU", "absent")
        .set("snippets.gpu-ready.required=false")
        .run();
    done.assert_common("succeeded", 0);
}

#[test]
fn the_dead_mans_switch_is_armed_with_timeout_plus_grace() {
    if !have("sh") {
        return;
    }
    let job = Job::new();
    let compiled = job.compile();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&compiled.cloud_config).unwrap();
    let argv: Vec<String> = doc["bootcmd"][0]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], "sh");
    assert_eq!(argv[1], "-c");
    assert_eq!(
        argv[5], "7800",
        "120 minutes + 10 minutes of grace, in seconds"
    );
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env(
            "PATH",
            format!(
                "{}:{}",
                fixtures().join("standins").display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("STANDIN_DIR", job.base.join("standin"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("bootforge: dead-man switch armed: power-off in 7800s via "),
        "{said}"
    );
    let calls = fs::read_to_string(job.base.join("standin/calls.log")).unwrap();
    let armed = calls.lines().any(|l| {
        l == "shutdown\t-P\t+130\tbootforge dead-man switch"
            || l.starts_with("systemd-run\t--unit=bootforge-deadman\t--on-active=7800s\t")
    });
    assert!(armed, "{calls}");
    let stamp = fs::read_to_string(job.root.join("state/boot-epoch")).unwrap();
    assert!(
        stamp.trim().parse::<u64>().is_ok(),
        "the boot time is stamped: {stamp:?}"
    );
    assert_eq!(
        doc["power_state"]["mode"], "poweroff",
        "the backstop is there"
    );
    assert_eq!(doc["runcmd"][0][0], "/usr/local/sbin/bootforge-job");
}

#[test]
fn the_budget_counts_from_boot() {
    if !have("bash") {
        return;
    }
    let mut job = Job::new();
    // Booted two hours ago: the budget is spent before the pipeline starts.
    fs::create_dir_all(job.root.join("state")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fs::write(
        job.root.join("state/boot-epoch"),
        format!("{}\n", now - 7200),
    )
    .unwrap();
    let done = job.run();
    done.assert_common("timed_out", 124);
    assert!(
        !done.job_dir().join("output/result.txt").exists(),
        "the pipeline never ran"
    );
}

mod quoting {
    use super::*;
    use proptest::prelude::*;

    fn hostile() -> impl Strategy<Value = String> {
        proptest::string::string_regex(r#"[a-z'"$()`\\;&|<>*?\[\]{}~!# \n\té🦀]{0,24}"#).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

        /// Hostile text in every free-text parameter that reaches the
        /// runner comes back byte for byte, and none of it runs.
        #[test]
        fn hostile_values_are_data_never_code(args in proptest::collection::vec(hostile(), 0..4), env in hostile(), pip_arg in hostile()) {
            if !have("bash") {
                return Ok(());
            }
            let mut job = Job::new();
            job.set(format!("snippets.pipeline.args={}", serde_json::to_string(&args).unwrap()));
            job.set(format!("snippets.pipeline.env={}", serde_json::json!({"HOSTILE": env})));
            job.set(format!("snippets.requirements.extra_args={}", serde_json::to_string(&[&pip_arg]).unwrap()));
            let done = job.run();
            done.assert_common("succeeded", 0);
            let out = done.job_dir().join("output");
            let expected: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
            prop_assert_eq!(fs::read(out.join("args")).unwrap(), expected);
            prop_assert_eq!(fs::read_to_string(out.join("env")).unwrap(), env);
            let pip = fs::read(done.base.join("standin/pip-args")).unwrap();
            let last: Vec<u8> = pip_arg.bytes().chain([0]).collect();
            prop_assert!(pip.ends_with(&last), "pip got {:?}", String::from_utf8_lossy(&pip));
        }
    }
}
