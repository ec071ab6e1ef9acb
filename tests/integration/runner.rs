//! The generated job runner, taken from the compiled payload and executed on
//! the host with stand-ins first on PATH (mount, mountpoint, getent, pip,
//! nvidia-smi, shutdown, cloud-init; the real `timeout`), once per outcome.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::{contains, fixtures, have};

/// A part of every path, so that every run also proves the quoting.
const HOSTILE_DIR: &str = "job root 'q' $(touch PWNED) `touch PWNED` *";

/// What a test does while the runner runs, given its pid and root.
type During = Box<dyn FnOnce(u32, &Path)>;

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
    /// What the test does while the runner runs.
    during: Option<During>,
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
        for script in fs::read_dir(fixtures().join("pipelines")).unwrap() {
            let script = script.unwrap();
            fs::copy(script.path(), app.join(script.file_name())).unwrap();
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
            format!("snippets.requirements.cache_dir={r}/efs/bootforge/cache"),
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
            during: None,
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

    fn during(&mut self, f: impl FnOnce(u32, &Path) + 'static) -> &mut Job {
        self.during = Some(Box::new(f));
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
        // The runner and its helpers, laid out as under /usr/local: the
        // runner finds them beside it (`../lib/bootforge`).
        for file in &compiled.files {
            if let Some(rel) = file.path.strip_prefix("/usr/local/") {
                let to = self.base.join(rel);
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::write(&to, &file.content).unwrap();
            }
        }
        let path = self.base.join("sbin/bootforge-job");
        assert!(path.is_file(), "the payload writes the job runner");
        let standins = fixtures().join("standins");
        let start = Instant::now();
        let child = Command::new("bash")
            .arg(&path)
            .current_dir(&self.base)
            .env(
                "PATH",
                format!("{}:{}", standins.display(), std::env::var("PATH").unwrap()),
            )
            .env("STANDIN_DIR", self.base.join("standin"))
            .envs(&self.env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(during) = self.during.take() {
            during(child.id(), &self.root);
        }
        let out = child.wait_with_output().unwrap();
        // What bash itself said (a failing step's own errors are in the log).
        fs::write(self.base.join("runner.stderr"), &out.stderr).unwrap();
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

/// The validator of `status.json` as this runner writes it (every field,
/// nothing else: stricter than `bootforge schema run-status`, which admits
/// what other runners wrote), made once.
fn run_status_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        jsonschema::validator_for(&bootforge::aws::status::strict_run_status_schema()).unwrap()
    })
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
        let status: Json = serde_json::from_str(&text).unwrap();
        // Every status a runner test reads holds to the shape this runner
        // writes, every field of it.
        let errors: Vec<String> = run_status_schema()
            .iter_errors(&status)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "status.json differs from the runner's own schema: {errors:#?}\n{text}"
        );
        status
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

    /// The `python -m pip` calls that installed the requirements in the
    /// job's virtual environment (not uv's own install).
    fn pip_calls(&self) -> Vec<String> {
        let mut calls = self.calls("python");
        calls.retain(|c| c.starts_with("python\t-m\tpip\tinstall\t-r\t"));
        calls
    }

    /// The `uv pip install` calls.
    fn uv_calls(&self) -> Vec<String> {
        let mut calls = self.calls("uv");
        calls.retain(|c| c.starts_with("uv\tpip\tinstall\t"));
        calls
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

/// The seconds the status says the environment took: to the millisecond,
/// and the `deps` phase's whole seconds within one of them.
fn env_seconds(status: &Json) -> f64 {
    let seconds = status["environment"]["seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no environment seconds: {status}"));
    let whole = status["phases"]["deps"].as_f64().unwrap();
    assert!(
        seconds >= 0.0 && (seconds - whole).abs() <= 1.0,
        "{seconds} against the phase's {whole}: {status}"
    );
    assert_eq!(
        (seconds * 1000.0).round() / 1000.0,
        seconds,
        "to the millisecond"
    );
    seconds
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
        "installing uv 0.13.9 with pip",
        "kept uv in ",
        "with uv (at most 20 min)",
        " + stand-in-package==1.0",
        "cached it in ",
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
        log.lines().next().unwrap().contains(&format!(
            "job run-7 starts (run i-0123456789abcdef0 {}); deadline in ",
            boot_id()
        )),
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
    // uv, made the environment and installed into it, with the bytecode
    // compiled, never fetching an interpreter.
    let venv = done.root.join("state/venv").display().to_string();
    let requirements = done.root.join("app/requirements_gpu.txt");
    assert_eq!(
        done.calls("uv")
            .iter()
            .filter(|c| !c.starts_with("uv\t--version"))
            .cloned()
            .collect::<Vec<_>>(),
        [
            format!("uv\tvenv\t--quiet\t--python\tpython3\t{venv}"),
            format!(
                "uv\tpip\tinstall\t--python\t{venv}/bin/python\t--compile-bytecode\t-r\t{}",
                requirements.display()
            ),
        ]
    );
    let uv_env = fs::read_to_string(done.base.join("standin/uv-env")).unwrap();
    assert!(uv_env.contains("UV_PYTHON_DOWNLOADS=never\n"), "{uv_env}");
    assert!(done.pip_calls().is_empty(), "{:?}", done.calls("python"));
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
fn a_pipeline_ended_by_a_shutdown_from_outside_is_interrupted() {
    // Whatever the pipeline said as systemd stopped it (or refused to start
    // it), a system on its way down makes the outcome interrupted, code 143.
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .script("fail.sh")
        .env("STANDIN_SYSTEM", "stopping")
        .run();
    done.assert_common("interrupted", 143);
    assert_eq!(
        done.status()["message"],
        "the instance was shut down while the pipeline ran"
    );
    let running = Job::new().script("fail.sh").run();
    running.assert_common("failed", 3);
}

/// Waits (at most 30 s) until the job's log says `text`.
fn until_logged(root: &Path, text: &str) {
    let log = root.join("efs/bootforge/jobs/run-7/job.log");
    let start = Instant::now();
    while !fs::read_to_string(&log).is_ok_and(|l| l.contains(text)) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never logged {text:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_shutdown_while_the_pipeline_runs_stops_it_first_and_says_interrupted() {
    // systemd stopping the runner's service sends it SIGTERM: the pipeline
    // gets its SIGTERM (its cue to checkpoint), then the status is written.
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .script("checkpoint.sh")
        .set("snippets.pipeline.env={WORK_SECONDS: '60'}")
        .during(|pid, root| {
            until_logged(root, "starting from scratch");
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        })
        .run();
    done.assert_common("interrupted", 143);
    assert!(done.took < Duration::from_secs(30), "{:?}", done.took);
    let log = done.log();
    let term = log
        .find("SIGTERM: checkpointing")
        .expect("the pipeline got SIGTERM");
    let status = log.find("job interrupted").unwrap();
    assert!(term < status, "{log}");
    assert_eq!(
        fs::read_to_string(done.job_dir().join("checkpoint/epoch-9.ckpt")).unwrap(),
        "weights after SIGTERM\n"
    );
}

#[test]
fn a_spot_notice_checkpoints_the_pipeline_and_says_interrupted_on_the_efs_at_once() {
    if !have("python3") {
        return;
    }
    let imds = crate::imds::Imds::start();
    let mut job = Job::new();
    job.script("checkpoint.sh")
        .set("snippets.pipeline.env={WORK_SECONDS: '60'}")
        .env("STANDIN_IMDS", &imds.url.clone());
    let records = imds.records.clone();
    let interim: std::sync::Arc<std::sync::Mutex<Option<(Json, Duration)>>> = Default::default();
    let seen = interim.clone();
    job.during(move |_, root| {
        until_logged(root, "starting from scratch");
        let at = Instant::now();
        fs::write(
            records.join("spot-notice"),
            format!(
                r#"{{"action": "terminate", "time": "{}"}}"#,
                humantime::format_rfc3339_seconds(
                    std::time::SystemTime::now() + Duration::from_secs(120)
                )
            ),
        )
        .unwrap();
        // The status on the EFS says interrupted before the job has ended.
        let file = root.join("efs/bootforge/jobs/run-7/status.json");
        while at.elapsed() < Duration::from_secs(30) {
            if let Some(s) = fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str::<Json>(&t).ok())
            {
                *seen.lock().unwrap() = Some((s, at.elapsed()));
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let done = job.run();
    done.assert_common("interrupted", 143);
    let (first, after) = interim
        .lock()
        .unwrap()
        .clone()
        .expect("a status during the run");
    assert_eq!(first["outcome"], "interrupted");
    assert_eq!(first["final"], false);
    assert!(
        after < Duration::from_secs(30),
        "notice -> status on the EFS: {after:?}"
    );
    eprintln!("notice -> interrupted on the EFS: {after:?}");
    let status = done.status();
    assert_eq!(status["final"], true);
    assert_eq!(status["notice"]["action"], "terminate");
    // The pipeline checkpointed and exited 0: still interrupted.
    let log = done.log();
    assert!(log.contains("SIGTERM: checkpointing"), "{log}");
    assert!(log.contains("spot interruption notice"), "{log}");
    assert!(done.job_dir().join("checkpoint/epoch-9.ckpt").is_file());
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
    assert!(log.contains("for at most "), "{log}");
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
            .contains("did not resolve in 5s"),
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
    assert!(done.stdout.contains("retrying in 5s"), "{}", done.stdout);
}

#[test]
fn deps_failed() {
    if !have("bash") {
        return;
    }
    // A uv that is there and fails is a failure, never a fall back to pip.
    let done = Job::new().env("STANDIN_UV", "fail").run();
    done.assert_common("deps_failed", 1);
    assert_eq!(phases(&done.status()), ["mount", "deps"]);
    assert_eq!(done.status()["environment"]["how"], "failed");
    env_seconds(&done.status());
    assert_eq!(
        done.status()["message"],
        format!(
            "uv could not install {} (exit code 1)",
            done.root.join("app/requirements_gpu.txt").display()
        )
    );
    assert!(done.log().contains("No solution found"), "{}", done.log());
    assert!(done.pip_calls().is_empty(), "pip ran after uv failed");

    let done = Job::new()
        .env("STANDIN_PIP", "fail")
        .set("snippets.requirements.installer=pip")
        .run();
    done.assert_common("deps_failed", 1);
    assert_eq!(done.status()["environment"]["how"], "failed");
    assert!(
        done.log().contains("Could not find a version"),
        "{}",
        done.log()
    );
}

#[test]
fn uv_is_kept_in_the_cache_and_pip_stands_in_when_uv_cannot_be_had() {
    if !have("bash") {
        return;
    }
    let first = Job::new().run();
    first.assert_common("succeeded", 0);
    let cache = first.root.join("efs/bootforge/cache");
    let kept = cache.join("tools/uv-0.13.9");
    assert!(kept.is_file(), "uv kept in the cache");
    // The tool environment that installed it is gone; uv is pinned by hash.
    assert!(!first.root.join("state/tools/uv-venv").exists());
    contains(
        &fs::read_to_string(first.root.join("state/tools/uv.txt")).unwrap(),
        "uv==0.13.9 --hash=sha256:d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    );

    // A later job with other requirements takes uv from the cache.
    let mut later = Job::new();
    fs::create_dir_all(later.root.join("efs/bootforge/cache/tools")).unwrap();
    fs::copy(
        &kept,
        later.root.join("efs/bootforge/cache/tools/uv-0.13.9"),
    )
    .unwrap();
    let done = later.run();
    done.assert_common("succeeded", 0);
    contains(&done.log(), "uv 0.13.9 from ");
    assert!(!done.log().contains("installing uv"), "{}", done.log());
    assert_eq!(done.uv_calls().len(), 1);

    // No uv to be had: pip, with a warning.
    let done = Job::new().env("STANDIN_UV", "absent").run();
    done.assert_common("succeeded", 0);
    contains(
        &done.log(),
        "warning: uv cannot be had: installing with pip",
    );
    assert_eq!(done.pip_calls().len(), 1);
    assert!(done.uv_calls().is_empty());

    // installer: uv refuses to go without it; installer: pip never tries it.
    let done = Job::new()
        .env("STANDIN_UV", "absent")
        .set("snippets.requirements.installer=uv")
        .run();
    done.assert_common("deps_failed", 1);
    assert_eq!(
        done.status()["message"],
        "uv 0.13.9 cannot be had (installer: uv)"
    );
    assert!(done.pip_calls().is_empty());
    let done = Job::new().set("snippets.requirements.installer=pip").run();
    done.assert_common("succeeded", 0);
    assert!(done.calls("uv").is_empty());
    assert_eq!(done.pip_calls().len(), 1);
}

#[test]
fn deps_failure_can_be_let_through() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .env("STANDIN_UV", "fail")
        .set("snippets.requirements.on_failure=continue")
        .run();
    done.assert_common("succeeded", 0);
    assert!(done.log().contains("going on (on_failure: continue)"));
    assert_eq!(done.status()["environment"]["how"], "failed");
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
    assert!(done.pip_calls().is_empty(), "pip never ran");
    assert!(done.calls("uv").is_empty(), "uv never ran");
    assert!(done.status()["environment"].is_null());
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

/// Runs the payload's `bootcmd` (the dead-man's switch) as cloud-init would,
/// with the stand-ins first on PATH; returns what it printed.
fn bootcmd(job: &Job, instance_id: &str) -> String {
    let compiled = job.compile();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&compiled.cloud_config).unwrap();
    let argv: Vec<String> = doc["bootcmd"][0]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[..2], ["sh", "-c"], "values travel as arguments");
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
        .env("INSTANCE_ID", instance_id)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// The delay of the last `systemd-run --on-active=…` the switch made.
fn armed_delay(job: &Job) -> u64 {
    let calls = fs::read_to_string(job.base.join("standin/calls.log")).unwrap();
    let call = calls
        .lines()
        .rev()
        .find(|l| l.contains("--unit=bootforge-deadman"))
        .unwrap_or_else(|| panic!("no dead-man's timer armed:\n{calls}"));
    for needed in [
        "-q",
        "--timer-property=DefaultDependencies=no",
        "-p\tDefaultDependencies=no",
        "/bin/systemctl\tpoweroff\t--force",
    ] {
        assert!(call.contains(needed), "{needed} missing: {call}");
    }
    call.split('\t')
        .find_map(|a| a.strip_prefix("--on-active="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_dead_mans_switch_keeps_the_first_boots_deadline() {
    if !have("sh") {
        return;
    }
    let job = Job::new();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&job.compile().cloud_config).unwrap();
    assert_eq!(
        doc["bootcmd"][0][5], "7800",
        "120 minutes + 10 minutes of grace, in seconds"
    );
    assert_eq!(
        doc["power_state"]["mode"], "poweroff",
        "the backstop is there"
    );
    assert_eq!(doc["runcmd"][0][0], "/usr/local/sbin/bootforge-job");

    // First boot: the deadline is now + budget, the stamp this boot's.
    let said = bootcmd(&job, "i-0123456789abcdef0");
    assert_eq!(
        said,
        "bootforge: dead-man's switch armed: power-off in 7800s via systemd\n"
    );
    assert_eq!(armed_delay(&job), 7800);
    let stamp = job.root.join("state/boot");
    let fields: Vec<String> = fs::read_to_string(&stamp)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(fields[0], "i-0123456789abcdef0");
    assert_eq!(fields[1], boot_id());
    let started: u64 = fields[2].parse().unwrap();
    assert!(started.abs_diff(now()) <= 2);
    assert_eq!(fields[3].parse::<u64>().unwrap(), started + 7800);

    // After a reboot 1000 s into the job: the same deadline, not a new budget.
    let first = now() - 1000;
    fs::write(
        &stamp,
        format!(
            "i-0123456789abcdef0 an-earlier-boot {first} {}\n",
            first + 7800
        ),
    )
    .unwrap();
    bootcmd(&job, "i-0123456789abcdef0");
    assert!(
        armed_delay(&job).abs_diff(6800) <= 2,
        "{}",
        armed_delay(&job)
    );
    let fields = fs::read_to_string(&stamp).unwrap();
    assert!(
        fields.starts_with(&format!("i-0123456789abcdef0 {} ", boot_id())),
        "the stamp is this boot's: {fields}"
    );
    assert!(fields.trim_end().ends_with(&format!(" {}", first + 7800)));

    // A stamp left by another instance (an AMI baked from one) is not ours.
    fs::write(&stamp, format!("i-0baked {} 100 200\n", boot_id())).unwrap();
    bootcmd(&job, "i-0123456789abcdef0");
    assert_eq!(armed_delay(&job), 7800);

    // A deadline already past powers off at once.
    fs::write(&stamp, "i-0123456789abcdef0 an-earlier-boot 100 200\n").unwrap();
    bootcmd(&job, "i-0123456789abcdef0");
    assert_eq!(armed_delay(&job), 1);
}

#[test]
fn without_systemd_the_switch_is_a_detached_sleep() {
    if !have("sh") {
        return;
    }
    let mut job = Job::new();
    // A systemd-run that fails, as on a host without systemd.
    let bin = job.base.join("no-systemd");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("systemd-run"), "#!/bin/sh\nexit 1\n").unwrap();
    fs::write(
        bin.join("sleep"),
        "#!/bin/sh\nmkdir -p \"$STANDIN_DIR\"\necho \"sleep $*\" >>\"$STANDIN_DIR/sleeps\"\n",
    )
    .unwrap();
    for tool in ["systemd-run", "sleep"] {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(bin.join(tool), fs::Permissions::from_mode(0o755)).unwrap();
    }
    job.env(
        "PATH",
        &format!(
            "{}:{}:{}",
            bin.display(),
            fixtures().join("standins").display(),
            std::env::var("PATH").unwrap()
        ),
    );
    let compiled = job.compile();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&compiled.cloud_config).unwrap();
    let argv: Vec<String> = doc["bootcmd"][0]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(&job.env)
        .env("STANDIN_DIR", job.base.join("standin"))
        .env("INSTANCE_ID", "i-0123456789abcdef0")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("via sleep\n"),
        "{out:?}"
    );
    // The detached sleep ran, then the power-off (both stand-ins here).
    let start = Instant::now();
    while !job.base.join("standin/calls.log").exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no power-off");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        fs::read_to_string(job.base.join("standin/sleeps")).unwrap(),
        "sleep 7800\n"
    );
    assert!(
        fs::read_to_string(job.base.join("standin/calls.log"))
            .unwrap()
            .contains("poweroff\t-f")
    );
}

/// Writes `STATE_DIR/boot` as the dead-man's switch would, for `started`.
fn stamp(job: &Job, instance: &str, boot: &str, started: u64) {
    fs::create_dir_all(job.root.join("state")).unwrap();
    fs::write(
        job.root.join("state/boot"),
        format!("{instance} {boot} {started} {}\n", started + 7800),
    )
    .unwrap();
}

#[test]
fn the_budget_counts_from_this_boots_stamp() {
    if !have("bash") {
        return;
    }
    // Booted two hours ago: the budget is spent before the pipeline starts.
    let mut job = Job::new();
    stamp(&job, "i-0123456789abcdef0", &boot_id(), now() - 7200);
    let done = job.run();
    done.assert_common("timed_out", 124);
    assert!(
        !done.job_dir().join("output/result.txt").exists(),
        "the pipeline never ran"
    );

    // The same stamp from another boot, or another instance, is ignored.
    for (instance, boot) in [
        ("i-0123456789abcdef0", "an-earlier-boot".to_string()),
        ("i-0baked", boot_id()),
    ] {
        let mut job = Job::new();
        stamp(&job, instance, &boot, now() - 7200);
        let done = job.run();
        done.assert_common("succeeded", 0);
        assert!(
            done.log().contains("no stamp of this boot"),
            "{}",
            done.log()
        );
    }
}

#[test]
fn a_leftover_process_neither_holds_the_runner_nor_survives() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .script("leftover.sh")
        .set("job.kill_after=3s")
        .run();
    done.assert_common("succeeded", 0);
    assert!(done.took < Duration::from_secs(20), "took {:?}", done.took);
    let pid = fs::read_to_string(done.job_dir().join("output/leftover.pid")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the leftover process {} is still running",
        pid.trim()
    );
    assert!(done.log().contains("ending what the pipeline left running"));
    assert!(done.log().contains("pipeline leaves a process behind"));
}

#[test]
fn an_earlier_runs_files_are_moved_aside_never_overwritten() {
    if !have("bash") {
        return;
    }
    let mut job = Job::new();
    let dir = job.root.join("efs/bootforge/jobs/run-7");
    fs::create_dir_all(dir.join("output")).unwrap();
    fs::write(dir.join("run-id"), "i-0earlier some-boot\n").unwrap();
    fs::write(
        dir.join("status.json"),
        r#"{"outcome": "failed", "instance_id": "i-0earlier"}"#,
    )
    .unwrap();
    fs::write(dir.join("job.log"), "the earlier run's log\n").unwrap();
    fs::write(dir.join("output/result.txt"), "earlier\n").unwrap();
    fs::write(dir.join("claim.json"), "the launcher's claim\n").unwrap();
    // Someone already keeps i-0earlier's files: nothing is overwritten.
    fs::create_dir_all(dir.join("runs/i-0earlier")).unwrap();
    fs::write(dir.join("runs/i-0earlier/status.json"), "older\n").unwrap();
    let done = job.run();
    done.assert_common("succeeded", 0);
    let status = done.status();
    assert_eq!(status["instance_id"], "i-0123456789abcdef0");
    assert_eq!(status["boot_id"], boot_id());
    let aside = dir.join("runs/i-0earlier.2");
    assert_eq!(
        fs::read_to_string(aside.join("status.json")).unwrap(),
        r#"{"outcome": "failed", "instance_id": "i-0earlier"}"#
    );
    assert_eq!(
        fs::read_to_string(aside.join("job.log")).unwrap(),
        "the earlier run's log\n"
    );
    assert_eq!(
        fs::read_to_string(aside.join("output/result.txt")).unwrap(),
        "earlier\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("runs/i-0earlier/status.json")).unwrap(),
        "older\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("claim.json")).unwrap(),
        "the launcher's claim\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("output/result.txt")).unwrap(),
        "run-7\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("run-id")).unwrap(),
        format!("i-0123456789abcdef0 {}\n", boot_id())
    );
    assert!(
        !done.log().contains("the earlier run's log"),
        "{}",
        done.log()
    );
}

/// A job directory left by an attempt of run `old_run` (per its run-id),
/// with a checkpoint, under a claim of run 2.
fn attempt_of_run(old_run: u32) -> (Job, PathBuf) {
    let job = Job::new();
    let dir = job.root.join("efs/bootforge/jobs/run-7");
    fs::create_dir_all(dir.join("checkpoint")).unwrap();
    fs::write(
        dir.join("run-id"),
        format!("i-0attempt1 some-boot {old_run}\n"),
    )
    .unwrap();
    fs::write(dir.join("status.json"), r#"{"outcome": "interrupted"}"#).unwrap();
    fs::write(dir.join("checkpoint/epoch-3.ckpt"), "weights\n").unwrap();
    // The launcher's claim: attempt 2 of run 2, this instance, on demand.
    let claim = serde_json::json!({
        "job": "run-7", "run": 2, "attempt": 2, "instance_id": "i-0123456789abcdef0",
        "requests": [
            {"client_token": "t1", "instance_type": "g6e.xlarge", "subnet": "subnet-1",
             "spot": true, "result": "InsufficientInstanceCapacity", "price_per_hour": 0.67},
            {"client_token": "t2", "instance_type": "g6e.xlarge", "subnet": "subnet-1",
             "spot": false, "result": "launched i-0123456789abcdef0", "price_per_hour": 1.861},
        ],
    });
    fs::write(dir.join("claim.json"), claim.to_string()).unwrap();
    (job, dir)
}

#[test]
fn the_checkpoint_folder_is_kept_across_a_runs_attempts_and_a_new_run_starts_empty() {
    if !have("bash") {
        return;
    }
    // The next attempt of run 2: the checkpoint is there for the pipeline.
    let (mut job, dir) = attempt_of_run(2);
    job.script("checkpoint.sh");
    let done = job.run();
    done.assert_common("succeeded", 0);
    assert_eq!(
        fs::read_to_string(dir.join("checkpoint/epoch-3.ckpt")).unwrap(),
        "weights\n"
    );
    assert!(
        done.log().contains("resuming from epoch-3.ckpt"),
        "{}",
        done.log()
    );
    assert!(!dir.join("runs/i-0attempt1/checkpoint").exists());
    // The earlier attempt's status is kept aside, never read as this one's.
    assert_eq!(
        fs::read_to_string(dir.join("runs/i-0attempt1/status.json")).unwrap(),
        r#"{"outcome": "interrupted"}"#
    );
    assert_eq!(done.status()["run"], 2);
    // Which attempt this instance is, and how it was bought, from the claim.
    assert_eq!(done.status()["attempt"], 2);
    assert_eq!(done.status()["market"], "on-demand");
    assert_eq!(done.status()["price_per_hour"], 1.861);
    assert_eq!(
        fs::read_to_string(dir.join("run-id")).unwrap(),
        format!("i-0123456789abcdef0 {} 2\n", boot_id())
    );

    // A new run (`--rerun` made run 2; the files are run 1's): the old
    // checkpoint goes aside with the run's other files.
    let (mut job, dir) = attempt_of_run(1);
    job.script("checkpoint.sh");
    let done = job.run();
    done.assert_common("succeeded", 0);
    assert_eq!(
        fs::read_to_string(dir.join("runs/i-0attempt1/checkpoint/epoch-3.ckpt")).unwrap(),
        "weights\n"
    );
    assert!(
        done.log().contains("starting from scratch"),
        "{}",
        done.log()
    );
    assert!(!dir.join("checkpoint/epoch-3.ckpt").exists());
}

#[test]
fn the_log_file_system_is_mounted_first_and_keeps_the_status() {
    if !have("bash") {
        return;
    }
    // The application's mount (listed first) fails; the recordings' works.
    let mut job = Job::new();
    let r = job.root.display().to_string();
    job.set(format!(
        "snippets.efs-mount.mounts=[{{fs_id: fs-0fdfeb8ca8304e991, path: /app, mount_point: {} }}, {{fs_id: fs-0fdfeb8ca8304e991, mount_point: {} }}]",
        json(&format!("{r}/app")),
        json(&format!("{r}/efs"))
    ))
    .set("snippets.efs-mount.attempts=1")
    .env("STANDIN_MOUNT_FAIL", ":/app");
    let done = job.run();
    done.assert_common("mount_failed", 1);
    let mounts = done.calls("mount");
    assert!(
        mounts[0].contains(":/\t"),
        "the log's file system first: {mounts:?}"
    );
    let status = done.status();
    assert_eq!(status["outcome"], "mount_failed");
    assert!(
        done.log()
            .contains("could not mount fs-0fdfeb8ca8304e991:/app")
    );
}

#[test]
fn every_external_step_is_bounded_on_its_own() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .env("STANDIN_MOUNT", "hang")
        .set("snippets.efs-mount.attempts=2")
        .set("snippets.efs-mount.attempt_timeout_seconds=5")
        .run();
    // Unbounded, one hung mount would hold the runner for an hour.
    done.assert_common("mount_failed", 1);
    assert_eq!(done.calls("mount").len(), 2);
    assert!(done.took < Duration::from_secs(120), "took {:?}", done.took);

    let done = Job::new()
        .env("STANDIN_GPU", "hang")
        .set("snippets.gpu-ready.wait_seconds=1")
        .set("snippets.gpu-ready.call_timeout_seconds=2")
        .run();
    done.assert_common("gpu_missing", 1);
    assert!(done.took < Duration::from_secs(120), "took {:?}", done.took);
}

#[test]
fn an_efs_that_stops_answering_cannot_hold_the_finalizer() {
    if !have("bash") {
        return;
    }
    let done = Job::new()
        .script("freeze-efs.sh")
        .set("snippets.shutdown-trap.finalize_seconds=10")
        .run();
    // The status still reaches the console and the local disk, and the
    // power-off was scheduled before the EFS was touched.
    done.assert_common("succeeded", 0);
    assert!(done.took < Duration::from_secs(20), "took {:?}", done.took);
    assert!(
        done.stdout.contains("the EFS did not answer"),
        "{}",
        done.stdout
    );
    assert!(!done.job_dir().join("status.json").exists());
    let calls = fs::read_to_string(done.base.join("standin/calls.log")).unwrap();
    let armed = calls
        .lines()
        .position(|l| l.starts_with("systemd-run\t-q\t--unit=bootforge-finalize\t--on-active=10\t"))
        .expect("the finalizer's power-off is armed");
    let shutdown = calls
        .lines()
        .position(|l| l.starts_with("shutdown\t"))
        .unwrap();
    assert!(armed < shutdown);
}

#[test]
fn tls_falls_back_to_nfs_with_a_warning_unless_refused() {
    if !have("bash") {
        return;
    }
    // No amazon-efs-utils and no dnf to install it.
    let done = Job::new().run();
    assert!(
        done.log()
            .contains("warning: mounting with plain NFS, without TLS: amazon-efs-utils is missing"),
        "{}",
        done.log()
    );
    let done = Job::new().set("snippets.efs-mount.efs_utils=always").run();
    done.assert_common("mount_failed", 1);
    assert!(done.calls("mount").is_empty());

    // With efs-utils: TLS; when the TLS mount fails, NFS, with the reason.
    let efs_utils = |job: &mut Job| {
        let path = format!(
            "{}:{}:{}",
            fixtures().join("standins").display(),
            fixtures().join("efs-utils").display(),
            std::env::var("PATH").unwrap()
        );
        job.env("PATH", &path);
    };
    let mut job = Job::new();
    efs_utils(&mut job);
    let done = job.run();
    done.assert_common("succeeded", 0);
    assert!(
        done.calls("mount")[0].starts_with("mount\t-t\tefs\t-o\ttls\tfs-0fdfeb8ca8304e991:/\t")
    );
    assert!(!done.log().contains("without TLS"));
    let mut job = Job::new();
    efs_utils(&mut job);
    let done = job.env("STANDIN_MOUNT_FAIL", "tls").run();
    done.assert_common("succeeded", 0);
    assert!(
        done.log().contains("without TLS: the TLS mount failed"),
        "{}",
        done.log()
    );
    assert!(done.calls("mount")[1].starts_with("mount\t-t\tnfs4\t"));
}

#[test]
fn the_pipeline_gets_its_users_environment_and_its_requirements() {
    if !have("bash") {
        return;
    }
    let done = Job::new().script("env.sh").run();
    done.assert_common("succeeded", 0);
    let env = fs::read_to_string(done.job_dir().join("output/env.txt")).unwrap();
    let venv = done.root.join("state/venv").display().to_string();
    for line in [
        format!("VIRTUAL_ENV={venv}"),
        format!("PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG=C.UTF-8".to_string(),
        "JOB_ID=run-7".to_string(),
        "HOME=/root".to_string(),
        format!("LOG_FILE={}", done.job_dir().join("job.log").display()),
    ] {
        assert!(env.lines().any(|l| l == line), "no {line} in:\n{env}");
    }
    assert!(
        !env.contains("LC_ALL="),
        "cloud-final's LC_ALL=C stays out:\n{env}"
    );
    assert!(
        !env.contains("STANDIN_DIR="),
        "nothing of the runner's environment leaks:\n{env}"
    );
    assert!(done.log().contains("appended by the pipeline"));
    // The installer ran for the environment's interpreter, never for the
    // one cloud-init runs on.
    assert!(
        done.uv_calls()[0].starts_with(&format!("uv\tpip\tinstall\t--python\t{venv}/bin/python\t")),
        "{:?}",
        done.uv_calls()
    );
    assert!(!done.calls("python3").iter().any(|c| c.contains("\tpip\t")));
    assert!(
        done.calls("python3")
            .iter()
            .any(|c| c.starts_with("python3\t-m\tvenv\t"))
    );
}

#[test]
fn the_requirements_environment_is_cached_and_a_damaged_cache_rebuilt() {
    if !have("bash") || !have("unsquashfs") {
        return;
    }
    let first = Job::new().run();
    first.assert_common("succeeded", 0);
    let cache = first.root.join("efs/bootforge/cache");
    // One entry: a directory named by the key, holding the image, its
    // SHA-256 and its size; nothing left aside.
    let entries: Vec<PathBuf> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "tools")
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = entries[0].clone();
    let key = entry.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    let image = fs::read(entry.join("env.sqfs")).unwrap();
    assert_eq!(&image[..4], b"hsqs", "a squashfs image");
    assert_eq!(
        fs::read_to_string(entry.join("env.sha256")).unwrap(),
        format!("{}  env.sqfs\n", sha256_hex(&image))
    );
    assert!(first.log().contains("cached it in"));
    // The status says how the environment was had, and its size.
    let environment = |done: &Finished| done.status()["environment"].clone();
    let installed = environment(&first);
    assert_eq!(installed["how"], "installed", "{installed}");
    env_seconds(&first.status());
    let counted = |e: &Json| (e["files"].as_u64().unwrap(), e["bytes"].as_u64().unwrap());
    let (files, bytes) = counted(&installed);
    assert!(files > 0 && bytes > 0, "{installed}");
    assert_eq!(
        fs::read_to_string(entry.join("env.size")).unwrap(),
        format!("{files} {bytes}\n")
    );

    // The same requirements on a later job (at the same place): the image
    // mounted read-only, no installer runs, and it is unmounted at the end,
    // once the pipeline is gone.
    let later = || {
        let mut job = Job::new();
        job.set(format!(
            "job.state_dir={}",
            first.root.join("state").display()
        ));
        copy_dir(&cache, &job.root.join("efs/bootforge/cache"));
        job
    };
    let done = later().run();
    assert_eq!(done.status()["outcome"], "succeeded");
    let venv = first.root.join("state/venv").display().to_string();
    contains(&done.log(), "(mounted read-only)");
    let mounted = done
        .calls("mount")
        .into_iter()
        .find(|c| c.starts_with("mount\t-t\tsquashfs\t"))
        .expect("the image is mounted");
    assert!(
        mounted.starts_with("mount\t-t\tsquashfs\t-o\tloop,ro,nodev,nosuid\t")
            && mounted.ends_with(&format!("\t{venv}")),
        "{mounted}"
    );
    assert!(
        done.pip_calls().is_empty() && done.uv_calls().is_empty(),
        "an installer ran again"
    );
    assert_eq!(environment(&done)["how"], "restored");
    env_seconds(&done.status());
    assert_eq!(
        counted(&environment(&done)),
        (files, bytes),
        "the same environment"
    );
    assert_eq!(done.calls("umount"), [format!("umount\t{venv}")]);
    let log = done.log();
    let (ended, unmounted) = (
        log.find("phase run: done").unwrap(),
        log.find(&format!("unmounted {venv}")).unwrap(),
    );
    assert!(ended < unmounted, "{log}");

    // This machine cannot mount it: installed instead, the entry kept.
    let done = later().env("STANDIN_MOUNT_FAIL", "squashfs").run();
    assert_eq!(done.status()["outcome"], "succeeded");
    contains(&done.log(), "cannot mount ");
    assert_eq!(environment(&done)["how"], "installed");
    assert_eq!(done.uv_calls().len(), 1);

    // A damaged image, or an entry without its checksum, is detected and
    // rebuilt in its place.
    for damage in ["truncated", "partial"] {
        let job = later();
        let copy = job.root.join("efs/bootforge/cache").join(&key);
        if damage == "truncated" {
            fs::write(copy.join("env.sqfs"), &image[..image.len() / 2]).unwrap();
        } else {
            fs::remove_file(copy.join("env.sha256")).unwrap();
        }
        let mut job = job;
        let done = job.run();
        assert_eq!(
            done.status()["outcome"],
            "succeeded",
            "{}",
            fs::read_to_string(done.base.join("runner.stderr")).unwrap()
        );
        contains(&done.log(), "is damaged or partial: rebuilding it");
        assert_eq!(done.uv_calls().len(), 1, "{damage}: installed again");
        assert_eq!(environment(&done)["how"], "rebuilt");
        let rebuilt = fs::read(copy.join("env.sqfs")).unwrap();
        assert_eq!(
            fs::read_to_string(copy.join("env.sha256")).unwrap(),
            format!("{}  env.sqfs\n", sha256_hex(&rebuilt)),
            "{damage}"
        );
        let names: Vec<String> = fs::read_dir(copy.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{damage}: nothing left aside: {names:?}");
    }

    // Other requirements: another environment.
    let mut other = Job::new();
    copy_dir(&cache, &other.root.join("efs/bootforge/cache"));
    fs::write(
        other.root.join("app/requirements_gpu.txt"),
        "torch==2.5.1\n",
    )
    .unwrap();
    let done = other.run();
    assert!(!done.log().contains("restored "));
    assert_eq!(
        fs::read_dir(other.root.join("efs/bootforge/cache"))
            .unwrap()
            .count(),
        3,
        "two entries and the tools"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
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
            let uv = fs::read(done.base.join("standin/uv-args")).unwrap();
            let last: Vec<u8> = pip_arg.bytes().chain([0]).collect();
            prop_assert!(uv.ends_with(&last), "uv got {:?}", String::from_utf8_lossy(&uv));
        }
    }
}

/// A figure, not a check (run it with `cargo test -- --ignored
/// output_throughput`): how long a pipeline writing 100 MB is held up by
/// its output going through the runner (timestamps, the EFS log, the
/// console), against the same pipeline writing to a file.
#[test]
#[ignore]
fn output_throughput() {
    let mb = 100;
    let mut job = Job::new();
    job.script("chatty.sh")
        .set(format!("snippets.pipeline.env={{CHATTY_MB: \"{mb}\"}}"));
    let done = job.run();
    done.assert_common("succeeded", 0);
    let through: f64 = fs::read_to_string(done.job_dir().join("output/elapsed"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let log = fs::metadata(done.job_dir().join("job.log")).unwrap().len();
    let direct = done.base.join("direct");
    fs::create_dir_all(&direct).unwrap();
    let out = Command::new("bash")
        .arg(fixtures().join("pipelines/chatty.sh"))
        .env("CHATTY_MB", mb.to_string())
        .env("OUTPUT_DIR", &direct)
        .stdout(fs::File::create(direct.join("out.log")).unwrap())
        .status()
        .unwrap();
    assert!(out.success());
    let to_file: f64 = fs::read_to_string(direct.join("elapsed"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!(
        "{mb} MB: {through:.2}s through the runner (log {} MB), {to_file:.2}s to a file",
        log / 1_000_000
    );
}
