//! A job's retry policy against the EC2 double: interruptions start the
//! next attempt of the same run, one instance at a time, on demand once
//! the policy says so; every other outcome, a spent policy and an end on
//! purpose end the job; a waiter that dies leaves the policy to the next
//! launch of the job.

use std::io::Read as _;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::Test;
use crate::launch::{World, tag};
use crate::proxy::{Faults, Proxy};

/// The spot profile (spot then on demand, 3 attempts, on demand after 2
/// interruptions) in the emulated account, with quick looks.
fn launch(w: &World, endpoint: &str, job: &str, extra: &[&str]) -> Test {
    let mut t = w.bootforge(endpoint);
    t.args(["launch", "traffic-sign-gpu-spot", "--json"])
        .args(["--poll", "0.1", "--ec2-poll", "0.3", "--status-grace", "1"])
        .args(w.sets())
        .args(["--set", &format!("job_id={job}")])
        .args(extra);
    t
}

/// A `launch --wait` in the background whose progress is read as it comes
/// (a long wait fills a pipe nobody reads, and the waiter would block).
struct Waiter {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Waiter {
    fn start(mut t: Test) -> Waiter {
        let mut child = t.spawn();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Waiter {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn progress(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The exit code, the JSON report and everything said on stderr.
    fn finish(mut self) -> (i32, Json, String) {
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let doc = serde_json::from_str(&stdout).unwrap_or(Json::Null);
        (code, doc, self.progress())
    }
}

/// What the instance's runner writes on the EFS: its status, `final` false
/// for the one written at a spot notice.
fn write_status(w: &World, job: &str, instance: &str, outcome: &str, exit_code: i32) {
    let dir = w.logs.path().join(job);
    std::fs::create_dir_all(&dir).unwrap();
    let status = serde_json::json!({
        "job_id": job, "instance_id": instance, "outcome": outcome,
        "exit_code": exit_code, "final": outcome != "interrupted",
    });
    std::fs::write(dir.join("status.json"), status.to_string()).unwrap();
}

/// The next instance of `job` other than `seen`, once one runs; asserts
/// that no two of the job's instances ever run at once.
fn next_instance(w: &World, job: &str, seen: &[String], waiter: &Waiter) -> String {
    let start = Instant::now();
    loop {
        let live = w.live_with_job(job);
        assert!(live.len() <= 1, "two instances of one job at once");
        if let Some(i) = live
            .iter()
            .find(|i| !seen.contains(&i.instance_id().unwrap().to_string()))
        {
            return i.instance_id().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no next instance of {job}; the waiter said:\n{}\nstates: {:?}\nclaim: {:?}",
            waiter.progress(),
            w.instances(&[("tag:bootforge:job", job)])
                .iter()
                .map(|i| format!(
                    "{:?} {:?} {:?}",
                    i.instance_id(),
                    i.state().and_then(|s| s.name()),
                    i.state_reason()
                ))
                .collect::<Vec<_>>(),
            std::fs::read_to_string(w.logs.path().join(job).join("claim.json"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A spot interruption of `id` as the instance lives it: the runner's
/// interim status on the notice, the termination `warning` later.
fn interrupt(w: &World, proxy: &Proxy, job: &str, id: &str, warning: Duration) {
    write_status(w, job, id, "interrupted", 143);
    proxy.interrupt(id, warning).join().unwrap();
}

/// Seconds from each termination (the notice + its warning) to the next
/// RunInstances, for the closing figures.
fn relaunch_seconds(proxy: &Proxy, ids: &[String], warning: Duration) -> Vec<f64> {
    let runs = proxy.run_instances_at();
    ids.iter()
        .filter_map(|id| proxy.noticed(id).map(|at| at + warning))
        .filter_map(|ended| {
            runs.iter()
                .find(|(at, _)| *at > ended)
                .map(|(at, _)| (*at - ended).as_secs_f64())
        })
        .collect()
}

fn assert_three_attempts(doc: &Json, ids: &[String]) {
    assert_eq!(doc["run"], 1, "one run");
    assert_eq!(doc["attempt"], 3);
    assert_eq!(doc["wait"]["outcome"], "succeeded");
    let attempts = doc["attempts"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["instance_id"].as_str().unwrap(),
                a["market"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (ids[0].as_str(), "spot", "interrupted"),
            (ids[1].as_str(), "spot", "interrupted"),
            (ids[2].as_str(), "on-demand", "succeeded"),
        ]
    );
    let sum: f64 = attempts
        .iter()
        .map(|a| a["cost_usd"].as_f64().unwrap())
        .sum();
    let total = doc["cost_usd"].as_f64().unwrap();
    assert!((total - sum).abs() < 1e-9, "{total} is the attempts' sum");
    assert_eq!(
        attempts[0]["price_per_hour"], 0.67,
        "the spot price known at launch"
    );
    assert_eq!(attempts[2]["price_per_hour"], 1.861);
}

#[test]
fn a_spot_job_interrupted_twice_succeeds_on_its_third_attempt_on_demand() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let warning = Duration::from_secs(1);
    let waiter = Waiter::start(launch(&w, &proxy.url, "thrice", &["--wait"]));
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..2 {
        let id = next_instance(&w, "thrice", &ids, &waiter);
        interrupt(&w, &proxy, "thrice", &id, warning);
        ids.push(id);
    }
    let id = next_instance(&w, "thrice", &ids, &waiter);
    write_status(&w, "thrice", &id, "succeeded", 0);
    proxy.power_off(&id);
    ids.push(id);
    let (exit, doc, stderr) = waiter.finish();
    assert_eq!(exit, 0, "{stderr}");
    assert_three_attempts(&doc, &ids);
    // Each attempt under its own token, tags and market: spot twice, then
    // on demand as the policy says.
    let calls = proxy.run_instances();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[0].ends_with(" spot") && calls[1].ends_with(" spot"));
    assert!(!calls[2].contains(" spot"), "{calls:?}");
    for (n, id) in ids.iter().enumerate() {
        let i = &w.instances(&[("instance-id", id)])[0];
        assert_eq!(tag(i.tags(), "bootforge:run"), Some("1"));
        assert_eq!(
            tag(i.tags(), "bootforge:attempt"),
            Some((n + 1).to_string().as_str())
        );
    }
    let claim: Json = serde_json::from_str(
        &std::fs::read_to_string(w.logs.path().join("thrice/claim.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(claim["attempt"], 3);
    assert_eq!(claim["earlier"].as_array().unwrap().len(), 2);
    eprintln!(
        "interruption → next RunInstances: {:?} s",
        relaunch_seconds(&proxy, &ids, warning)
    );
}

#[test]
fn a_failed_job_and_a_job_terminated_on_purpose_are_not_retried() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    // The pipeline failed (its exit code 3): an outcome the policy does not name.
    let waiter = Waiter::start(launch(&w, &proxy.url, "failing", &["--wait"]));
    let id = next_instance(&w, "failing", &[], &waiter);
    write_status(&w, "failing", &id, "failed", 3);
    proxy.power_off(&id);
    let (exit, doc, stderr) = waiter.finish();
    assert_eq!(exit, 1, "{stderr}");
    assert_eq!(doc["wait"]["outcome"], "failed");
    assert_eq!(doc["attempts"].as_array().unwrap().len(), 1);
    assert!(
        doc["retry"]
            .as_str()
            .unwrap()
            .contains("does not name `failed`")
    );
    assert_eq!(proxy.run_instances().len(), 1, "never relaunched");

    // Stopped from outside by a TerminateInstances call: the runner says
    // `interrupted`, and EC2 says it was asked to.
    let waiter = Waiter::start(launch(&w, &proxy.url, "stopped", &["--wait"]));
    let id = next_instance(&w, "stopped", &[], &waiter);
    write_status(&w, "stopped", &id, "interrupted", 143);
    w.terminate(&id);
    let (exit, doc, stderr) = waiter.finish();
    assert_eq!(exit, 4, "{stderr}");
    assert!(doc["retry"].as_str().unwrap().contains("on purpose"));
    assert_eq!(
        doc["wait"]["state_reason"]["code"],
        "Client.UserInitiatedShutdown"
    );
    assert_eq!(proxy.run_instances().len(), 2, "never relaunched");
    // A later launch of the job reports it, and launches nothing either.
    let again = launch(&w, &proxy.url, "stopped", &[]).run();
    assert_eq!(proxy.run_instances().len(), 2, "{}", again.stderr());

    // `bootforge terminate --job`: the claim records it too, and the job is
    // reported `terminated`, not an interruption a caller would retry.
    let waiter = Waiter::start(launch(&w, &proxy.url, "ended", &["--wait"]));
    let id = next_instance(&w, "ended", &[], &waiter);
    write_status(&w, "ended", &id, "interrupted", 143);
    w.bootforge(&proxy.url)
        .args(["terminate", "--job", "ended", "--json"])
        .args(w.sets())
        .run()
        .success();
    let (exit, doc, stderr) = waiter.finish();
    assert_eq!(exit, 1, "{stderr}");
    assert_eq!(doc["wait"]["outcome"], "terminated", "{doc:#}");
    assert!(
        doc["retry"]
            .as_str()
            .unwrap()
            .contains("bootforge terminate")
    );
    let claim: Json = serde_json::from_str(
        &std::fs::read_to_string(w.logs.path().join("ended/claim.json")).unwrap(),
    )
    .unwrap();
    assert!(
        claim["ended_on_purpose"]
            .as_str()
            .unwrap()
            .starts_with("bootforge terminate")
    );
    assert_eq!(proxy.run_instances().len(), 3, "never relaunched");
}

#[test]
fn a_killed_waiter_leaves_the_policy_to_the_next_launch_of_the_job() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let warning = Duration::from_secs(1);
    let mut waiter = Waiter::start(launch(&w, &proxy.url, "orphan", &["--wait"]));
    let first = next_instance(&w, "orphan", &[], &waiter);
    // The host dies during the first interruption.
    waiter.kill();
    interrupt(&w, &proxy, "orphan", &first, warning);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(proxy.run_instances().len(), 1, "nobody is left to retry");
    // The task redelivered: the launch continues the policy.
    let waiter = Waiter::start(launch(&w, &proxy.url, "orphan", &["--wait"]));
    let mut ids = vec![first];
    let id = next_instance(&w, "orphan", &ids, &waiter);
    interrupt(&w, &proxy, "orphan", &id, warning);
    ids.push(id);
    let id = next_instance(&w, "orphan", &ids, &waiter);
    write_status(&w, "orphan", &id, "succeeded", 0);
    proxy.power_off(&id);
    ids.push(id);
    let (exit, doc, stderr) = waiter.finish();
    assert_eq!(exit, 0, "{stderr}");
    assert_three_attempts(&doc, &ids);
}

#[test]
fn the_guard_refuses_a_policy_whose_worst_case_is_over_the_ceiling() {
    let Some(w) = World::new() else { return };
    // 3 attempts at the on-demand cap: $12.10, over $10.
    let run = launch(
        &w,
        &w.moto.url,
        "dear",
        &["--set", "instance.max_cost_usd=10"],
    )
    .run()
    .failure(1);
    crate::contains(
        &run.stderr(),
        "3 attempts of 2.17 h of timeout and grace, each at its cap",
    );
    crate::contains(&run.stderr(), "$12.10");
    assert!(w.live_with_job("dear").is_empty());
}
