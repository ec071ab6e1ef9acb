//! `launch --local`: a job rehearsed on this machine, its instance a
//! container of the smoke image booted from the same payload, a temporary
//! folder as the EFS; and a real Celery worker, with a real Redis as broker
//! and result backend, running the README's task against it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::{Test, root};

/// The pipeline the EFS folder holds: fails for jobs named `fail-…`, runs
/// for five minutes for `long-…`; `resume-…` runs until SIGTERM, which it
/// answers with a checkpoint in CHECKPOINT_DIR, and resumes from one it
/// finds there; else it writes its result and succeeds.
const PIPELINE: &str = r#"#!/bin/bash
echo "pipeline of $JOB_ID as $(id -un)"
case "$JOB_ID" in
  fail-*) echo "failing on purpose" >&2; exit 3 ;;
  long-*) sleep 300 ;;
  slow-*) sleep 25 ;;
  resume-*)
    if [ -e "$CHECKPOINT_DIR/step.ckpt" ]; then
      echo "resuming from $(cat "$CHECKPOINT_DIR/step.ckpt")"
      cp "$CHECKPOINT_DIR/step.ckpt" "$OUTPUT_DIR/resumed-from.txt"
    else
      trap 'echo "checkpoint of $JOB_ID" >"$CHECKPOINT_DIR/step.ckpt"; exit 0' TERM
      while :; do sleep 0.2 & wait $!; done
    fi
    ;;
esac
sleep 2
echo "result of $JOB_ID" >"$OUTPUT_DIR/result.txt"
"#;

/// A rehearsal world: the EFS folder with the pipeline, and a state folder
/// of its own for the local instances' files and claims.
struct World {
    efs: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl World {
    fn new() -> Option<World> {
        if !crate::smoke::ready() {
            return None;
        }
        let efs = tempfile::tempdir().unwrap();
        let script = efs.path().join("app/simulate_pipeline.sh");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, PIPELINE).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(World {
            efs,
            state: tempfile::tempdir().unwrap(),
        })
    }

    fn bootforge(&self) -> Test {
        let mut t = Test::new();
        t.env("XDG_STATE_HOME", self.state.path());
        t
    }

    /// `launch traffic-sign-gpu --set job_id=JOB --local --efs EFS --json EXTRA…`.
    fn launch(&self, job: &str, extra: &[&str]) -> Test {
        let mut t = self.bootforge();
        t.args(["launch", "traffic-sign-gpu", "--set"])
            .arg(format!("job_id={job}"))
            .args(["--local", "--efs"])
            .arg(self.efs.path())
            .arg("--json")
            .args(extra);
        t
    }

    /// The job's directory in the EFS folder.
    fn job_dir(&self, job: &str) -> PathBuf {
        self.efs.path().join("bootforge/jobs").join(job)
    }

    /// How many local instances ran for `job` (each leaves its host folder).
    fn instances_of(&self, job: &str) -> usize {
        std::fs::read_dir(self.state.path().join("bootforge/local"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{job}-run"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// The live local instances of `jobs` (other tests run beside).
    fn ps(&self, jobs: &[&str]) -> Vec<Json> {
        let run = self
            .bootforge()
            .args(["ps", "--local", "--json"])
            .run()
            .success();
        let all: Json = serde_json::from_str(&run.stdout()).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .filter(|i| jobs.iter().any(|j| i["job"] == *j))
            .cloned()
            .collect()
    }
}

fn json(run: &crate::Run) -> Json {
    serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout(), run.stderr()))
}

/// Whether the engine still has a container of instance `id`.
fn container_exists(id: &str) -> bool {
    Command::new("docker")
        .args(["container", "inspect", id.trim_start_matches("local-")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_rehearsal_reports_the_status_its_run_wrote_on_the_folder() {
    let Some(w) = World::new() else { return };
    let run = w.launch("ok-1", &["--wait"]).run();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let doc = json(&run);
    let id = doc["instance_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("local-") && id.len() == 18, "{id}");
    assert_eq!(doc["launched"], true);
    assert_eq!(doc["run"], 1);
    assert_eq!(doc["job"], "ok-1");
    assert_eq!(
        doc["claim"],
        w.job_dir("ok-1").join("claim.json").display().to_string()
    );
    let on_folder: Json = serde_json::from_str(
        &std::fs::read_to_string(w.job_dir("ok-1").join("status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["wait"]["status"], on_folder,
        "the report is the status on the folder"
    );
    assert_eq!(on_folder["instance_id"], id.as_str());
    assert_eq!(on_folder["outcome"], "succeeded");
    assert_eq!(doc["wait"]["source"], "efs");
    assert_eq!(
        std::fs::read_to_string(w.job_dir("ok-1").join("output/result.txt")).unwrap(),
        "result of ok-1\n"
    );
    assert!(
        !container_exists(&id),
        "the powered-off container is removed"
    );
    assert!(w.ps(&["ok-1"]).is_empty());

    // The job is done: launching it again reports that run, starts nothing.
    let again = w.launch("ok-1", &["--wait"]).run();
    assert_eq!(again.code(), 0, "{}", again.stderr());
    let again = json(&again);
    assert_eq!(again["launched"], false);
    assert_eq!(again["instance_id"], id.as_str());
    assert_eq!(again["wait"]["outcome"], "succeeded");
    assert_eq!(w.instances_of("ok-1"), 1);
}

#[test]
fn one_job_launched_twice_at_once_gets_one_container() {
    let Some(w) = World::new() else { return };
    let spawn = || w.launch("dup-1", &["--wait"]).spawn();
    let (a, b) = (spawn(), spawn());
    let outputs: Vec<_> = [a, b]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let docs: Vec<Json> = outputs
        .iter()
        .map(|o| {
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            serde_json::from_slice(&o.stdout).unwrap()
        })
        .collect();
    assert_eq!(docs[0]["instance_id"], docs[1]["instance_id"]);
    assert_eq!(
        docs.iter().filter(|d| d["launched"] == true).count(),
        1,
        "{docs:#?}"
    );
    assert_eq!(w.instances_of("dup-1"), 1);
    assert!(
        !w.job_dir("dup-1").join("runs").exists(),
        "no earlier run was set aside"
    );
}

#[test]
fn failures_and_terminations_keep_their_exit_codes() {
    let Some(w) = World::new() else { return };
    let failed = w.launch("fail-1", &["--wait"]).run();
    assert_eq!(failed.code(), 1, "{}", failed.stderr());
    let failed = json(&failed);
    assert_eq!(failed["wait"]["outcome"], "failed");
    assert_eq!(failed["wait"]["status"]["exit_code"], 3);

    // A long job: it runs, ps lists it, terminate ends it as EC2 would.
    let started = w.launch("long-1", &[]).run();
    assert_eq!(started.code(), 0, "{}", started.stderr());
    let id = json(&started)["instance_id"].as_str().unwrap().to_string();
    let listed = w.ps(&["long-1"]);
    assert!(
        listed
            .iter()
            .any(|i| i["instance_id"] == id.as_str() && i["job"] == "long-1"),
        "{listed:#?}"
    );
    // Wait for the pipeline's first line before ending the instance.
    let log = w.job_dir("long-1").join("job.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("pipeline of long-1")) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the pipeline never started"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    w.bootforge()
        .args(["terminate", "--local", "i-0123456789abcdef0"])
        .run()
        .failure(2);
    let ended = w
        .bootforge()
        .args(["terminate", "--local", &id, "--json"])
        .run()
        .success();
    assert_eq!(json(&ended)["terminated"][0], id.as_str());
    assert!(!container_exists(&id));
    // Its status says `interrupted` (the runner was stopped from outside),
    // and the claim says it was ended on purpose: `terminated`, exit 1,
    // never a success and never an interruption to retry.
    let after = w.launch("long-1", &["--wait"]).run();
    assert_eq!(after.code(), 1, "{}\n{}", after.stdout(), after.stderr());
    let after = json(&after);
    assert_eq!(after["launched"], false);
    assert_eq!(after["wait"]["outcome"], "terminated");
    assert_eq!(after["wait"]["status"]["outcome"], "interrupted");
    assert_eq!(after["wait"]["status"]["exit_code"], 143);
    // The runner was stopped before the EFS folder was unmounted: its
    // status is there, not only on the console.
    assert_eq!(after["wait"]["source"], "efs", "{after:#}");
}

/// Waits (at most two minutes) for the pipeline of `job` to start.
fn until_the_pipeline_runs(w: &World, job: &str) {
    let log = w.job_dir(job).join("job.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&format!("pipeline of {job}"))) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the pipeline never started"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_spot_interruption_rehearsed_locally_ends_the_job_interrupted_with_its_notice() {
    let Some(w) = World::new() else { return };
    let started = w.launch("long-2", &[]).run();
    assert_eq!(started.code(), 0, "{}", started.stderr());
    let id = json(&started)["instance_id"].as_str().unwrap().to_string();
    until_the_pipeline_runs(&w, "long-2");
    // The notice on the instance's metadata stand-in; the runner sees it,
    // stops the pipeline and powers off before the action time.
    let at = Instant::now();
    let ended = w
        .bootforge()
        .args(["terminate", "--local", "--spot-notice", "--warning", "90"])
        .args(["--job", "long-2", "--json"])
        .run()
        .success();
    assert_eq!(json(&ended)["terminated"][0], id.as_str());
    assert!(
        at.elapsed() < Duration::from_secs(90),
        "the instance did not end before the action time: {:?}",
        at.elapsed()
    );
    assert!(!container_exists(&id));
    let after = w.launch("long-2", &["--wait"]).run();
    assert_eq!(after.code(), 4, "{}\n{}", after.stdout(), after.stderr());
    let after = json(&after);
    assert_eq!(after["wait"]["outcome"], "interrupted");
    assert_eq!(after["wait"]["source"], "efs");
    assert_eq!(after["wait"]["status"]["notice"]["action"], "terminate");
    assert_eq!(after["wait"]["status"]["final"], true);
    // A plain terminate needs no notice; --warning without --spot-notice is
    // a usage error.
    w.bootforge()
        .args(["terminate", "--local", "--warning", "5", "--job", "long-2"])
        .run()
        .failure(2);
}

#[test]
fn a_retry_policy_resumes_a_job_interrupted_locally_from_its_checkpoint() {
    let Some(w) = World::new() else { return };
    // Two attempts of the on-demand budget: a ceiling that admits them.
    let policy = [
        "--set",
        "job.retry={on: [interrupted], attempts: 2}",
        "--set",
        "instance.max_cost_usd=9",
    ];
    let waiter = w
        .launch("resume-1", &[&policy[..], &["--wait"]].concat())
        .spawn();
    until_the_pipeline_runs(&w, "resume-1");
    w.bootforge()
        .args(["terminate", "--local", "--spot-notice", "--warning", "60"])
        .args(["--job", "resume-1", "--json"])
        .run()
        .success();
    let out = waiter.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["wait"]["outcome"], "succeeded", "{doc:#}");
    assert_eq!(
        (doc["run"].clone(), doc["attempt"].clone()),
        (1.into(), 2.into())
    );
    let outcomes: Vec<&str> = doc["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["interrupted", "succeeded"]);
    assert_eq!(
        doc["attempts"][0]["state_reason"], "Server.SpotInstanceTermination",
        "the rehearsal gives the reason EC2 gives"
    );
    // The second attempt found what the first wrote.
    let resumed = std::fs::read_to_string(w.job_dir("resume-1").join("output/resumed-from.txt"));
    assert_eq!(resumed.unwrap().trim(), "checkpoint of resume-1");
    assert_eq!(doc["wait"]["status"]["attempt"], 2, "{doc:#}");
    assert_eq!(w.instances_of("resume-1"), 2);
    // `status` and `logs` of the local job, from the EFS folder.
    let place = |t: &mut Test| {
        t.args(["--local", "--efs"]).arg(w.efs.path());
    };
    let mut t = w.bootforge();
    t.args(["status", "resume-1", "--json"]);
    place(&mut t);
    let s = json(&t.run().success());
    assert_eq!(s["outcome"], "succeeded", "{s:#}");
    assert_eq!(
        (s["attempt"].clone(), s["instance_state"].clone()),
        (2.into(), "terminated".into())
    );
    assert_eq!(s["earlier"][0]["outcome"], "interrupted");
    let mut t = w.bootforge();
    t.args(["logs", "resume-1"]);
    place(&mut t);
    crate::contains(
        &t.run().success().stdout(),
        "resuming from checkpoint of resume-1",
    );

    // The same job ended with a plain terminate: not retried.
    let waiter = w
        .launch("resume-2", &[&policy[..], &["--wait"]].concat())
        .spawn();
    until_the_pipeline_runs(&w, "resume-2");
    w.bootforge()
        .args(["terminate", "--local", "--job", "resume-2", "--json"])
        .run()
        .success();
    let out = waiter.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["wait"]["outcome"], "terminated", "{doc:#}");
    assert!(
        doc["retry"].as_str().unwrap().contains("on purpose"),
        "{doc:#}"
    );
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(w.instances_of("resume-2"), 1, "never relaunched");
}

#[test]
fn the_dry_run_says_where_the_job_would_run() {
    let Some(w) = World::new() else { return };
    let run = w.launch("dry-1", &["--dry-run"]).run().success();
    let doc = json(&run);
    assert_eq!(doc["allowed"], true);
    crate::contains(
        doc["message"].as_str().unwrap(),
        &w.job_dir("dry-1").display().to_string(),
    );
    assert!(w.ps(&["dry-1"]).is_empty(), "a dry run starts nothing");
    w.bootforge()
        .args([
            "launch",
            "traffic-sign-gpu",
            "--local",
            "--efs",
            "/nonexistent/efs",
        ])
        .run()
        .failure(2);
}

/// A child process killed when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `port` on loopback accepts connections.
fn listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn have_python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("BOOTFORGE_REQUIRE_ALL").is_some() {
            panic!(
                "the Python module {module} is required by the full test run (scripts/test installs it)"
            );
        }
        eprintln!("skipped: the Python module {module} is not installed");
    }
    found
}

/// A Celery deployment of the example task (`examples/celery_tasks.py`,
/// over the package's `bootforge.celery`): a real Redis as broker and
/// result backend, workers of the prefork pool the README recommends, and
/// every job rehearsed locally with the world's EFS folder.
struct Deployment<'w> {
    world: &'w World,
    url: String,
    logs: tempfile::TempDir,
    _redis: Reaped,
}

impl Deployment<'_> {
    fn start(world: &World) -> Option<Deployment<'_>> {
        if !crate::have("redis-server")
            || !have_python_module("celery")
            || !have_python_module("redis")
        {
            return None;
        }
        let port = free_port();
        let redis = Reaped(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        listening(port);
        Some(Deployment {
            world,
            url: format!("redis://127.0.0.1:{port}/0"),
            logs: tempfile::tempdir().unwrap(),
            _redis: redis,
        })
    }

    fn env(&self, c: &mut Command) {
        c.current_dir(root().join("examples"))
            .env("PYTHONPATH", root().join("python"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("BOOTFORGE", env!("CARGO_BIN_EXE_bootforge"))
            .env("CELERY_BROKER_URL", &self.url)
            .env("CELERY_RESULT_BACKEND", &self.url)
            .env("BOOTFORGE_LOCAL_EFS", self.world.efs.path())
            .env("XDG_STATE_HOME", self.world.state.path())
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("BOOTFORGE_PROFILES")
            .env_remove("BOOTFORGE_SNIPPETS");
    }

    /// A worker of `concurrency` processes, in a process group of its own;
    /// `visibility` sets Redis's visibility timeout (seconds).
    fn worker(&self, name: &str, concurrency: u32, visibility: Option<u32>) -> Reaped {
        let mut worker = Command::new("python3");
        worker
            .args([
                "-m",
                "celery",
                "-A",
                "celery_tasks",
                "worker",
                "--pool",
                "prefork",
            ])
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--loglevel",
                "INFO",
            ])
            .args(["--hostname", &format!("{name}@%h")])
            .args([
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ]);
        self.env(&mut worker);
        if let Some(v) = visibility {
            worker.env("CELERY_VISIBILITY_TIMEOUT", v.to_string());
        }
        use std::os::unix::process::CommandExt as _;
        Reaped(
            worker
                .process_group(0)
                .stdout(
                    std::fs::File::create(self.logs.path().join(format!("{name}.log"))).unwrap(),
                )
                .stderr(
                    std::fs::File::create(self.logs.path().join(format!("{name}.err"))).unwrap(),
                )
                .spawn()
                .unwrap(),
        )
    }

    /// A client that sends `jobs` (one task each) and prints each result
    /// from the backend; [`Deployment::read`] reads them.
    fn send(&self, jobs: &[&str]) -> Child {
        let client = format!(
            "import json\nfrom celery_tasks import run_gpu_job\nsent = [run_gpu_job.delay(j) for j in {jobs:?}]\nprint(json.dumps([r.get(timeout=300) for r in sent]))\n"
        );
        let mut command = Command::new("python3");
        command.args(["-c", &client]);
        self.env(&mut command);
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The results `client` printed, once it has them all.
    fn read(&self, client: Child) -> Vec<Json> {
        let out = client.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\nworkers:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.worker_logs()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn worker_logs(&self) -> String {
        std::fs::read_dir(self.logs.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| {
                format!(
                    "{}:\n{}",
                    e.file_name().to_string_lossy(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// The processes whose command line holds `text`.
fn processes_with(text: &str) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-f", text]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn celery_jobs_rehearse_end_to_end() {
    let Some(w) = World::new() else { return };
    let Some(celery) = Deployment::start(&w) else {
        return;
    };
    let _worker = celery.worker("main", 4, None);
    // Three jobs, the third twice at once.
    let results = celery.read(celery.send(&["e2e-ok", "fail-e2e", "e2e-dup", "e2e-dup"]));
    assert_eq!(results[0]["outcome"], "succeeded", "{results:#?}");
    assert_eq!(results[1]["outcome"], "failed", "{results:#?}");
    assert_eq!(results[1]["status"]["exit_code"], 3);
    assert_eq!(results[2]["outcome"], "succeeded");
    assert_eq!(
        results[2]["instance"], results[3]["instance"],
        "one job, one instance"
    );
    for (job, result) in [
        ("e2e-ok", &results[0]),
        ("fail-e2e", &results[1]),
        ("e2e-dup", &results[2]),
    ] {
        assert_eq!(w.instances_of(job), 1, "{job}: one container");
        let status: Json = serde_json::from_str(
            &std::fs::read_to_string(w.job_dir(job).join("status.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(status["instance_id"], result["instance"], "{job}");
        assert_eq!(
            &status, &result["status"],
            "{job}: the backend holds the run's own status"
        );
    }
    assert!(
        w.ps(&["e2e-ok", "fail-e2e", "e2e-dup"]).is_empty(),
        "every container powered off and is gone"
    );
}

/// The whole worker (its main process and its pool) is SIGKILLed while its
/// task waits for a job: its bootforge ends with it (a parent-death
/// signal), Redis gives the unacknowledged task to a new worker after the
/// visibility timeout, and that one attaches to the job's instance.
#[test]
fn a_worker_killed_mid_wait_leaves_no_waiter_and_its_task_comes_back() {
    let Some(w) = World::new() else { return };
    let Some(celery) = Deployment::start(&w) else {
        return;
    };
    let job = "slow-killed";
    let mut first = celery.worker("first", 1, Some(5));
    let client = celery.send(&[job]);
    // Mid-wait: the job's instance runs and the worker's bootforge waits.
    let marker = format!("job_id={job}");
    let start = Instant::now();
    let claimed = || {
        std::fs::read_to_string(w.job_dir(job).join("claim.json"))
            .ok()
            .and_then(|c| serde_json::from_str::<Json>(&c).ok())
            .is_some_and(|c| c["instance_id"].is_string())
    };
    while !claimed() || processes_with(&marker).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the worker never launched the job:\n{}",
            celery.worker_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let waiters = processes_with(&marker);
    // The worker's main process and its pool, not the bootforge they started.
    let pool = Command::new("pgrep")
        .args(["-P", &first.0.id().to_string()])
        .output()
        .unwrap();
    let mut worker: Vec<String> = String::from_utf8_lossy(&pool.stdout)
        .split_whitespace()
        .map(str::to_string)
        .filter(|p| !waiters.iter().any(|w| w.to_string() == *p))
        .collect();
    worker.push(first.0.id().to_string());
    let killed = Command::new("kill")
        .arg("-KILL")
        .args(&worker)
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = first.0.wait();
    let start = Instant::now();
    while !processes_with(&marker).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "bootforge {waiters:?} outlived its worker"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _second = celery.worker("second", 1, Some(5));
    let result = celery.read(client).remove(0);
    assert_eq!(result["outcome"], "succeeded", "{result:#}");
    assert_eq!(w.instances_of(job), 1, "one job, one instance");
    let status: Json =
        serde_json::from_str(&std::fs::read_to_string(w.job_dir(job).join("status.json")).unwrap())
            .unwrap();
    assert_eq!(status["instance_id"], result["instance"]);
    assert!(
        celery.worker_logs().contains("second@"),
        "the second worker ran it"
    );
}
