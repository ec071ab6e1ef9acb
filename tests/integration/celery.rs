//! The package's Celery integration end to end, as a host runs it: a real
//! Redis as broker and result backend, real prefork workers with beat
//! (`-B`) running `examples/celery_tasks.py` as it is, the EC2 double
//! (whose instances are `pending` a few seconds first, as on EC2) in front
//! of moto, and a stand-in process that plays each instance: it runs once
//! EC2 says so, writes its status on the jobs folder after a while, and
//! powers off, or writes `interrupted` on a spot notice.
//!
//! Reused by the local rehearsals (`local.rs`), whose instances are
//! containers instead.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::launch::{World, client_for};
use crate::proxy::{Faults, Proxy};
use crate::root;

/// A child process killed with its process group when the test ends,
/// passed or not.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
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
        thread::sleep(Duration::from_millis(100));
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

/// A Celery deployment of `examples/celery_tasks.py`: a Redis of its own,
/// workers started with beat, every job's report delivered to `job_done`,
/// which appends it to a file the test reads.
pub struct Deployment {
    url: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    _redis: Reaped,
}

impl Deployment {
    /// With `env` for every process (the profile's `--set` values, the
    /// EC2 endpoint or the local EFS folder…).
    pub fn start(env: &[(&str, String)]) -> Option<Deployment> {
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
            url: format!("redis://127.0.0.1:{port}/0"),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            dir: tempfile::tempdir().unwrap(),
            _redis: redis,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(root().join("examples"))
            .env("PYTHONPATH", root().join("python"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("BOOTFORGE", env!("CARGO_BIN_EXE_bootforge"))
            .env("CELERY_BROKER_URL", &self.url)
            .env("CELERY_RESULT_BACKEND", &self.url)
            .env("JOB_DONE_LOG", self.dir.path().join("deliveries.jsonl"))
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("BOOTFORGE_PROFILES")
            .env_remove("BOOTFORGE_SNIPPETS");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// A prefork worker of `concurrency` processes with beat, in a process
    /// group of its own.
    pub fn worker(&self, name: &str, concurrency: u32) -> Reaped {
        let mut worker = self.command("python3");
        worker
            .args(["-m", "celery", "-A", "celery_tasks", "worker", "-B"])
            .args([
                "--pool",
                "prefork",
                "--concurrency",
                &concurrency.to_string(),
            ])
            .args(["--loglevel", "INFO", "--hostname", &format!("{name}@%h")])
            .arg("--schedule")
            .arg(self.dir.path().join(format!("beat-{name}")))
            .args([
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ]);
        use std::os::unix::process::CommandExt as _;
        Reaped(
            worker
                .process_group(0)
                .stdout(std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap())
                .stderr(std::fs::File::create(self.dir.path().join(format!("{name}.err"))).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    /// Sends one launch task per job, at once; what each task returned.
    pub fn send(&self, jobs: &[String]) -> Vec<Json> {
        let client = format!(
            "import json\nfrom celery_tasks import run_gpu_job\nsent = [run_gpu_job.delay(j) for j in {jobs:?}]\nprint(json.dumps([r.get(timeout=300) for r in sent]))\n"
        );
        let out = self
            .command("python3")
            .args(["-c", &client])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\nworkers:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every report `job_done` received, in order.
    pub fn deliveries(&self) -> Vec<Json> {
        std::fs::read_to_string(self.dir.path().join("deliveries.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (at most `bound`) until every job of `jobs` was delivered.
    pub fn until_delivered(&self, jobs: &[String], bound: Duration) -> Vec<Json> {
        let start = Instant::now();
        loop {
            let got = self.deliveries();
            if jobs
                .iter()
                .all(|j| got.iter().any(|d| d["job_id"] == j.as_str()))
            {
                return got;
            }
            assert!(
                start.elapsed() < bound,
                "{} of {} jobs delivered after {bound:?}: {got:#?}\nworkers:\n{}",
                got.len(),
                jobs.len(),
                self.logs()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") || name.ends_with(".err") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                all += &format!(
                    "{name}:\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        all
    }
}

/// How many times each job was delivered.
pub fn per_job(deliveries: &[Json]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for d in deliveries {
        *count
            .entry(d["job_id"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    count
}

/// One instance as the stand-in played it.
#[derive(Debug, Clone)]
pub struct Played {
    pub job: String,
    pub started: Instant,
    pub ended: Option<Instant>,
}

/// The stand-in that plays every instance the double started: it runs
/// from when EC2 shows it `running`, and after `length` writes a
/// succeeded status of the runner's shape in its job's directory and
/// powers off; on a spot notice it writes `interrupted` at once, and EC2
/// ends it at the action time.
pub struct Player {
    stop: Arc<AtomicBool>,
    played: Arc<Mutex<HashMap<String, Played>>>,
    most: Arc<Mutex<usize>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Player {
    pub fn start(w: &World, proxy: &Arc<Proxy>, length: Duration) -> Player {
        let stop = Arc::new(AtomicBool::new(false));
        let played: Arc<Mutex<HashMap<String, Played>>> = Arc::default();
        let most = Arc::new(Mutex::new(0));
        let (moto, jobs_dir) = (w.moto.url.clone(), w.logs.path().to_path_buf());
        let (s, p, m, proxy) = (stop.clone(), played.clone(), most.clone(), proxy.clone());
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = client_for(&rt, &moto);
            while !s.load(Ordering::SeqCst) {
                play(&rt, &client, &proxy, &jobs_dir, length, &p);
                let running = p
                    .lock()
                    .unwrap()
                    .values()
                    .filter(|i| i.ended.is_none())
                    .count();
                let mut most = m.lock().unwrap();
                *most = (*most).max(running);
                drop(most);
                thread::sleep(Duration::from_millis(200));
            }
        });
        Player {
            stop,
            played,
            most,
            thread: Some(thread),
        }
    }

    /// The most instances running at once.
    pub fn most_at_once(&self) -> usize {
        *self.most.lock().unwrap()
    }

    pub fn played(&self) -> HashMap<String, Played> {
        self.played.lock().unwrap().clone()
    }

    pub fn running(&self) -> usize {
        self.played().values().filter(|i| i.ended.is_none()).count()
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One look of the stand-in.
fn play(
    rt: &tokio::runtime::Runtime,
    moto: &aws_sdk_ec2::Client,
    proxy: &Proxy,
    jobs_dir: &Path,
    length: Duration,
    played: &Mutex<HashMap<String, Played>>,
) {
    let now = Instant::now();
    let booted: Vec<String> = proxy
        .booted()
        .into_iter()
        .filter(|(_, at)| *at <= now)
        .map(|(id, _)| id)
        .filter(|id| !played.lock().unwrap().contains_key(id))
        .collect();
    if !booted.is_empty() {
        // Its job, from its tags, asked of moto itself (not counted by the
        // double); one terminated meanwhile (`bootforge terminate`) never ran.
        let found = rt.block_on(async {
            moto.describe_instances()
                .set_instance_ids(Some(booted.clone()))
                .send()
                .await
        });
        if let Ok(found) = found {
            for i in found.reservations().iter().flat_map(|r| r.instances()) {
                let running =
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running");
                let job = i
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("bootforge:job"))
                    .and_then(|t| t.value());
                if let (true, Some(job)) = (running, job) {
                    played.lock().unwrap().insert(
                        i.instance_id().unwrap_or_default().to_string(),
                        Played {
                            job: job.to_string(),
                            started: now,
                            ended: None,
                        },
                    );
                }
            }
        }
    }
    let mut played = played.lock().unwrap();
    for (id, p) in played.iter_mut().filter(|(_, p)| p.ended.is_none()) {
        if proxy.noticed(id).is_some() {
            write_status(jobs_dir, &p.job, id, "interrupted", 143);
            p.ended = Some(now);
        } else if now.duration_since(p.started) >= length {
            write_status(jobs_dir, &p.job, id, "succeeded", 0);
            proxy.power_off(id);
            p.ended = Some(now);
        }
    }
}

/// What an instance writes at its end: a final status of the runner's
/// shape, renamed into place.
fn write_status(jobs_dir: &Path, job: &str, instance: &str, outcome: &str, exit_code: i32) {
    let dir = jobs_dir.join(job);
    std::fs::create_dir_all(&dir).unwrap();
    let now = bootforge::clock::rfc3339(bootforge::clock::now());
    let status = serde_json::json!({"schema_version": 2, "job_id": job, "instance_id": instance,
        "outcome": outcome, "exit_code": exit_code, "final": true, "started_at": now,
        "ended_at": now, "message": ""});
    let tmp = dir.join(".status.json.tmp");
    std::fs::write(&tmp, status.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("status.json")).unwrap();
}

/// The environment of a deployment on the double at `endpoint`: the
/// emulated account's `--set` values (and `more`), passes every `every`.
fn on_the_double(
    w: &World,
    endpoint: &str,
    every: u64,
    more: &[(&str, Json)],
) -> Vec<(&'static str, String)> {
    let mut sets: serde_json::Map<String, Json> = w
        .sets()
        .chunks(2)
        .filter_map(|pair| pair[1].split_once('='))
        .map(|(k, v)| (k.to_string(), Json::from(v)))
        .collect();
    for (k, v) in more {
        sets.insert(k.to_string(), v.clone());
    }
    vec![
        ("BOOTFORGE_SETS", Json::Object(sets).to_string()),
        ("BOOTFORGE_EVERY", every.to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-2".to_string()),
        ("AWS_CONFIG_FILE", "/nonexistent/bootforge-test".to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/bootforge-test".to_string(),
        ),
        // The runner's status reaches the jobs folder before the instance
        // is gone: no NFS allowance to wait out here.
        ("BOOTFORGE_STATUS_GRACE", "1".to_string()),
    ]
}

/// Waits (at most `bound`) until `cond`.
fn until(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < bound, "{what}: not after {bound:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Every instance moto holds for `job`.
fn instances_of(w: &World, job: &str) -> usize {
    w.instances(&[("tag:bootforge:job", job)]).len()
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n:02}")).collect()
}

/// A job's length here, and the passes' interval.
const LENGTH: Duration = Duration::from_secs(30);
const EVERY: u64 = 5;

fn double(w: &World) -> Arc<Proxy> {
    Arc::new(Proxy::start(
        &w.moto.address,
        Faults {
            pending_for: Duration::from_secs(3),
            ..Faults::default()
        },
    ))
}

#[test]
fn twenty_jobs_on_a_two_process_worker_run_at_once_and_a_deploy_does_not_wait_for_them() {
    let Some(w) = World::new() else { return };
    let proxy = double(&w);
    let Some(celery) = Deployment::start(&on_the_double(&w, &proxy.url, EVERY, &[])) else {
        return;
    };
    let player = Player::start(&w, &proxy, LENGTH);
    let mut first = celery.worker("first", 2);
    let jobs = names("twenty", 20);
    let sent = Instant::now();
    let started = celery.send(&jobs);
    let launched = sent.elapsed();
    assert!(
        started
            .iter()
            .all(|r| r["state"] == "launched" && r["instance"].is_string()),
        "each task returns once its job is launched: {started:#?}"
    );
    until("all twenty running", Duration::from_secs(60), || {
        player.running() == 20
    });
    // A deploy: the worker's warm shutdown waits for its tasks, and none
    // of them waits for a job.
    let stop = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &first.0.id().to_string()])
        .status();
    let _ = first.0.wait();
    let shutdown = stop.elapsed();
    let running_after = player.running();
    assert_eq!(
        running_after, 20,
        "the worker exited while every job still ran ({shutdown:?}): it held none of them"
    );
    let _second = celery.worker("second", 2);
    let got = celery.until_delivered(&jobs, Duration::from_secs(180));
    let last = sent.elapsed();
    assert_eq!(player.most_at_once(), 20, "all twenty ran at the same time");
    for (job, n) in per_job(&got) {
        assert_eq!(n, 1, "{job}: its end delivered once, without a crash");
    }
    for job in &jobs {
        assert_eq!(instances_of(&w, job), 1, "{job}: one instance");
    }
    for d in &got {
        assert_eq!(d["outcome"], "succeeded", "{d:#}");
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    }
    eprintln!(
        "figures: 20 tasks launched in {:.1}s; at most {} instances at once; worker exit on SIGTERM {:.1}s; every on_end {:.1}s after sending (a job is {}s, passes every {EVERY}s, instances pending 3s)",
        launched.as_secs_f64(),
        player.most_at_once(),
        shutdown.as_secs_f64(),
        last.as_secs_f64(),
        LENGTH.as_secs()
    );
}

#[test]
fn with_max_running_jobs_wait_their_turn_in_order_and_a_crash_loses_no_end() {
    let Some(w) = World::new() else { return };
    let proxy = double(&w);
    let more = [("job.max_running", Json::from(4))];
    let Some(celery) = Deployment::start(&on_the_double(&w, &proxy.url, EVERY, &more)) else {
        return;
    };
    let player = Player::start(&w, &proxy, LENGTH);
    let worker = celery.worker("first", 2);
    let jobs = names("four", 20);
    let started = celery.send(&jobs);
    let queued = started.iter().filter(|r| r["state"] == "queued").count();
    assert_eq!(queued, 16, "four launched, sixteen queued: {started:#?}");
    // The first four end and are delivered; then worker and beat are
    // killed while the next four run, and come back once those ended.
    until("four delivered", Duration::from_secs(120), || {
        celery.deliveries().len() >= 4
    });
    until("the second four running", Duration::from_secs(60), || {
        player.running() == 4 && player.played().len() == 8
    });
    drop(worker);
    until("the second four ended", Duration::from_secs(60), || {
        player
            .played()
            .values()
            .filter(|p| p.ended.is_some())
            .count()
            == 8
    });
    let _again = celery.worker("again", 2);
    let got = celery.until_delivered(&jobs, Duration::from_secs(600));
    assert!(
        player.most_at_once() <= 4,
        "{} at once",
        player.most_at_once()
    );
    assert_eq!(player.most_at_once(), 4);
    let twice: Vec<(String, usize)> = per_job(&got).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        twice.iter().all(|(_, n)| *n == 2),
        "at most one extra delivery per job across the crash: {twice:?}"
    );
    for job in &jobs {
        assert_eq!(instances_of(&w, job), 1, "{job}: one instance");
    }
    // Queued jobs start in the order they came: `decide.rs` and
    // `advance.rs` hold that; here the order is shown.
    let mut by_start: Vec<(Instant, String)> = player
        .played()
        .into_values()
        .map(|p| (p.started, p.job))
        .collect();
    by_start.sort();
    eprintln!(
        "figures: at most {} at once; {} ends delivered twice across the crash; start order {:?}",
        player.most_at_once(),
        twice.len(),
        by_start.iter().map(|(_, j)| j.as_str()).collect::<Vec<_>>()
    );
}

#[test]
fn a_spot_interruption_gets_its_next_attempt_from_the_pass() {
    let Some(w) = World::new() else { return };
    let proxy = double(&w);
    let more = [
        (
            "job.retry",
            serde_json::json!("{on: [interrupted], attempts: 2}"),
        ),
        ("instance.max_cost_usd", Json::from(20)),
    ];
    let mut env = on_the_double(&w, &proxy.url, EVERY, &more);
    env.push(("BOOTFORGE_PROFILE", "traffic-sign-gpu-spot".to_string()));
    let Some(celery) = Deployment::start(&env) else {
        return;
    };
    let player = Player::start(&w, &proxy, Duration::from_secs(10));
    let _worker = celery.worker("first", 2);
    let jobs = vec!["spot-1".to_string()];
    celery.send(&jobs);
    until("its first attempt running", Duration::from_secs(60), || {
        player.running() == 1
    });
    let first = player.played().into_keys().next().unwrap();
    let warning = Duration::from_secs(3);
    proxy.interrupt(&first, warning).join().unwrap();
    let terminated = Instant::now();
    until(
        "its second attempt launched",
        Duration::from_secs(60),
        || proxy.run_instances_at().len() == 2,
    );
    let relaunched = terminated.elapsed();
    let got = celery.until_delivered(&jobs, Duration::from_secs(120));
    assert_eq!(got.len(), 1, "one end: {got:#?}");
    let d = &got[0];
    assert_eq!(d["outcome"], "succeeded", "{d:#}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"], "interrupted");
    assert_eq!(
        attempts[0]["state_reason"],
        "Server.SpotInstanceTermination"
    );
    assert_eq!(instances_of(&w, "spot-1"), 2, "one instance per attempt");
    eprintln!(
        "figures: the second attempt launched {:.1}s after the first was terminated (passes every {EVERY}s)",
        relaunched.as_secs_f64()
    );
}

/// The local rehearsals' deployment: every job a container of the smoke
/// image with `efs` as its EFS folder and `state` for the instances' files.
pub fn local_deployment(efs: &Path, state: &Path) -> Option<Deployment> {
    Deployment::start(&[
        ("BOOTFORGE_LOCAL_EFS", efs.display().to_string()),
        ("XDG_STATE_HOME", state.display().to_string()),
        ("BOOTFORGE_EVERY", "2".to_string()),
    ])
}

pub fn jobs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
