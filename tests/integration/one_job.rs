//! One job, one instance, one true outcome: the launcher against the EC2
//! double (tests/integration/proxy.rs), with separate processes as the
//! Celery workers that run them.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::launch::{World, json, tag};
use crate::proxy::{Faults, Proxy};
use crate::{Test, contains};

/// The options every launch here takes: quick looks at the status file and
/// at EC2, a short wait for a late status.
const QUICK: &[&str] = &["--poll", "0.1", "--ec2-poll", "0.3", "--status-grace", "1"];

fn launch(w: &World, endpoint: &str, job: &str, extra: &[&str]) -> Test {
    let mut t = w.bootforge(endpoint);
    t.args(["launch", "traffic-sign-gpu", "--json"])
        .args(QUICK)
        .args(w.sets())
        .args(["--set", &format!("job_id={job}")])
        .args(extra);
    t
}

fn output(child: Child) -> (i32, Json, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    (out.status.code().unwrap_or(-1), doc, stderr)
}

/// Every instance moto holds for `job`, whatever its state.
fn all_of_job(w: &World, job: &str) -> Vec<String> {
    w.instances(&[("tag:bootforge:job", job)])
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect()
}

fn job_dir(w: &World, job: &str) -> PathBuf {
    w.logs.path().join(job)
}

/// What the instance would write at its end.
fn write_status(w: &World, job: &str, instance: &str, outcome: &str) {
    let dir = job_dir(w, job);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("status.json"),
        serde_json::json!({"job_id": job, "instance_id": instance, "outcome": outcome, "exit_code": 0})
            .to_string(),
    )
    .unwrap();
}

fn ten_launches_at_once(no_token_protection: bool) {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            capacity_first: 1,
            hide_for: Duration::from_secs(2),
            run_delay: Duration::from_millis(300),
            no_token_protection,
            ..Faults::default()
        },
    );
    let children: Vec<Child> = (0..10)
        .map(|_| launch(&w, &proxy.url, "same-job", &[]).spawn())
        .collect();
    let results: Vec<(i32, Json, String)> = children.into_iter().map(output).collect();
    let ids: Vec<String> = all_of_job(&w, "same-job");
    assert_eq!(ids.len(), 1, "one instance for one job: {ids:?}");
    for (code, doc, stderr) in &results {
        assert_eq!(*code, 0, "{stderr}");
        assert_eq!(doc["instance_id"], ids[0].as_str(), "{stderr}");
        assert_eq!(doc["run"], 1);
    }
    assert_eq!(
        results
            .iter()
            .filter(|(_, d, _)| d["launched"] == true)
            .count(),
        1,
        "one launch started it, the others attached"
    );
    // The first attempt found no capacity, the second launched; nobody else
    // sent RunInstances.
    assert_eq!(
        proxy.run_instances().len(),
        2,
        "{:?}",
        proxy.run_instances()
    );
}

#[test]
fn ten_launches_of_one_job_at_once_leave_one_instance() {
    ten_launches_at_once(false);
}

#[test]
fn ten_launches_of_one_job_at_once_leave_one_instance_without_token_protection() {
    ten_launches_at_once(true);
}

#[test]
fn a_launch_retried_after_its_job_finished_reports_the_outcome_and_launches_nothing() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let first = json(&launch(&w, &proxy.url, "done-job", &[]).run().success());
    let id = first["instance_id"].as_str().unwrap().to_string();
    write_status(&w, "done-job", &id, "succeeded");
    w.terminate(&id);
    let sent = proxy.run_instances().len();

    let again = launch(&w, &proxy.url, "done-job", &[]).run().success();
    let doc = json(&again);
    assert_eq!(doc["launched"], false);
    assert_eq!(doc["instance_id"], id.as_str());
    assert_eq!(doc["wait"]["outcome"], "succeeded");
    assert_eq!(doc["wait"]["source"], "efs");
    assert_eq!(proxy.run_instances().len(), sent, "nothing was sent");
    assert_eq!(all_of_job(&w, "done-job"), std::slice::from_ref(&id));

    // The same when the launcher died between RunInstances and recording
    // the instance: EC2 answers IdempotentInstanceTerminated to the token,
    // and the run's instance is found by its tags.
    let claim_path = job_dir(&w, "done-job").join("claim.json");
    let mut claim: Json =
        serde_json::from_str(&std::fs::read_to_string(&claim_path).unwrap()).unwrap();
    claim["instance_id"] = Json::Null;
    claim["heartbeat"] = 0.into();
    claim["holder"] = "gone-host:1".into();
    claim["end"] = Json::Null;
    std::fs::write(&claim_path, claim.to_string()).unwrap();
    let again = json(&launch(&w, &proxy.url, "done-job", &[]).run().success());
    assert_eq!(again["instance_id"], id.as_str());
    assert_eq!(again["wait"]["outcome"], "succeeded");
    assert_eq!(all_of_job(&w, "done-job"), [id]);
    assert_eq!(
        proxy.run_instances().len(),
        sent + 1,
        "the same token, once more"
    );
}

#[test]
fn rerun_starts_a_new_run_only_once_the_last_has_ended() {
    let Some(w) = World::new() else { return };
    let first = json(&launch(&w, &w.moto.url, "again", &[]).run().success());
    let refused = launch(&w, &w.moto.url, "again", &["--rerun"])
        .run()
        .failure(2);
    contains(&refused.stderr(), "still runs on");
    w.terminate(first["instance_id"].as_str().unwrap());
    let second = json(
        &launch(&w, &w.moto.url, "again", &["--rerun"])
            .run()
            .success(),
    );
    assert_eq!(second["run"], 2);
    assert_eq!(second["launched"], true);
    assert_ne!(second["instance_id"], first["instance_id"]);
    assert_ne!(second["client_token"], first["client_token"]);
    let i = &w.instances(&[("instance-id", second["instance_id"].as_str().unwrap())])[0];
    assert_eq!(tag(i.tags(), "bootforge:run"), Some("2"));
}

/// `launch --wait` in the background, and the id of the instance it started.
fn waiting(w: &World, endpoint: &str, job: &str, extra: &[&str]) -> (Child, String) {
    let child = launch(w, endpoint, job, &[&["--wait"], extra].concat()).spawn();
    let id = w.wait_for_job(job);
    (child, id)
}

#[test]
fn a_spot_interruption_is_interrupted_and_a_failed_launch_launch_failed() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    for (job, reason, outcome, code) in [
        (
            "spotted",
            "Server.SpotInstanceTermination",
            "interrupted",
            4,
        ),
        (
            "no-room",
            "Server.InsufficientInstanceCapacity",
            "launch_failed",
            5,
        ),
        (
            "vanished",
            "Client.InstanceInitiatedShutdown",
            "no_status",
            3,
        ),
    ] {
        let (child, id) = waiting(
            &w,
            &proxy.url,
            job,
            &["--set", "instance.market=spot-then-on-demand"],
        );
        proxy.end(&id, reason, &format!("{reason}: as EC2 says"));
        let (exit, doc, stderr) = output(child);
        assert_eq!(exit, code, "{job}: {stderr}");
        assert_eq!(doc["wait"]["outcome"], outcome, "{job}");
        assert_eq!(doc["wait"]["state_reason"]["code"], reason);
    }
}

#[test]
fn status_tells_the_attempt_its_cost_and_its_outcome_and_logs_print_the_run() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let doc = json(&launch(&w, &proxy.url, "watched", &[]).run().success());
    let id = doc["instance_id"].as_str().unwrap().to_string();
    let status = |extra: &[&str]| -> Json {
        let run = w
            .bootforge(&proxy.url)
            .args(["status", "watched", "--json"])
            .args(w.sets())
            .args(extra)
            .run()
            .success();
        serde_json::from_str(&run.stdout()).unwrap()
    };
    // Launched: running, for how long, at what cost so far.
    let s = status(&[]);
    assert_eq!(s["phase"], "launched", "{s:#}");
    assert_eq!(s["instance_state"], "running");
    assert_eq!(s["instance_id"], id.as_str());
    assert!(s["cost_so_far"].as_f64().is_some(), "{s:#}");
    let dir = job_dir(&w, "watched");
    let now = bootforge::clock::now();
    let text = w
        .bootforge(&proxy.url)
        .args(["status", "watched"])
        .args(w.sets())
        .run()
        .success()
        .stdout();
    crate::contains(&text, "launched for");
    // The log, and the outcome once the status is final.
    std::fs::write(dir.join("run-id"), format!("{id} boot 1\n")).unwrap();
    std::fs::write(
        dir.join("job.log"),
        "phase run: start\npipeline says hello\n",
    )
    .unwrap();
    let logs = w
        .bootforge(&proxy.url)
        .args(["logs", "watched"])
        .args(w.sets())
        .run()
        .success()
        .stdout();
    crate::contains(&logs, "pipeline says hello");
    std::fs::write(
        dir.join("status.json"),
        serde_json::json!({"instance_id": id, "outcome": "succeeded", "exit_code": 0,
            "final": true, "ended_at": bootforge::clock::rfc3339(now)})
        .to_string(),
    )
    .unwrap();
    proxy.power_off(&id);
    let s = status(&[]);
    assert_eq!(
        (s["phase"].clone(), s["outcome"].clone()),
        ("ended".into(), "succeeded".into())
    );
    assert_eq!(s["instance_state"], "terminated");
    // `logs --follow` of an ended run prints it and returns.
    let logs = w
        .bootforge(&proxy.url)
        .args(["logs", "watched", "--follow"])
        .args(w.sets())
        .run()
        .success()
        .stdout();
    crate::contains(&logs, "pipeline says hello");
    // An unknown job says where it looked and what to give.
    let run = w
        .bootforge(&proxy.url)
        .args(["status", "nobody", "--json"])
        .args(w.sets())
        .run()
        .failure(2);
    crate::contains(&run.stderr(), "--profile");
}

#[test]
fn a_stale_status_from_an_earlier_run_is_never_reported() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    // An earlier run's status sits in the job's directory.
    write_status(&w, "stale", "i-0earlier0000000", "succeeded");
    let (child, id) = waiting(&w, &proxy.url, "stale", &[]);
    w.terminate(&id);
    let (exit, doc, stderr) = output(child);
    assert_eq!(exit, 3, "{stderr}");
    assert_eq!(doc["wait"]["outcome"], "no_status");
    assert_eq!(doc["wait"]["status"], Json::Null);

    // The console has this run's status: it is the one reported.
    write_status(&w, "stale-2", "i-0earlier0000000", "succeeded");
    let (child, id) = waiting(&w, &proxy.url, "stale-2", &[]);
    proxy.set_console(
        &id,
        &format!(
            "boot\nbootforge-status: {}\n",
            serde_json::json!({"instance_id": id, "outcome": "deps_failed", "exit_code": 1})
        ),
    );
    w.terminate(&id);
    let (exit, doc, _) = output(child);
    assert_eq!(exit, 1);
    assert_eq!(doc["wait"]["outcome"], "deps_failed");
    assert_eq!(doc["wait"]["source"], "console");
}

#[test]
fn wait_rides_out_describe_errors_and_uses_the_instances_own_deadline() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            hide_for: Duration::from_secs(1),
            ..Faults::default()
        },
    );
    let (child, id) = waiting(&w, &proxy.url, "bumpy", &[]);
    // Throttled for a while: the SDK retries, then bootforge backs off.
    proxy.set_faults(|f| f.throttle = 14);
    std::thread::sleep(Duration::from_secs(2));
    write_status(&w, "bumpy", &id, "succeeded");
    w.terminate(&id);
    let (exit, doc, stderr) = output(child);
    assert_eq!(exit, 0, "{stderr}");
    assert_eq!(doc["wait"]["outcome"], "succeeded");

    // An instance found by a retried launch keeps its own deadline: past it,
    // it is terminated.
    let first = json(&launch(&w, &w.moto.url, "late", &[]).run().success());
    let late = first["instance_id"].as_str().unwrap().to_string();
    w.rt.block_on(async {
        w.client
            .create_tags()
            .resources(&late)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("bootforge:deadline")
                    .value("2001-01-01T00:00:00Z")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let (exit, doc, stderr) = output(launch(&w, &w.moto.url, "late", &["--wait"]).spawn());
    assert_eq!(exit, 3, "{stderr}");
    assert_eq!(doc["wait"]["terminated_by_bootforge"], true);
    contains(&stderr, "past its deadline");
}

/// A job the account's quota refused, made due to be tried again (its
/// `retry_at` passed).
fn due(w: &World, job: &str) {
    let path = job_dir(w, job).join("claim.json");
    let mut claim: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    claim["queued"]["retry_at"] = 0.into();
    std::fs::write(&path, claim.to_string()).unwrap();
}

#[test]
fn a_quota_queues_the_job_and_no_other_request_is_sent() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            quota: Some("VcpuLimitExceeded"),
            ..Faults::default()
        },
    );
    let run = launch(&w, &proxy.url, "quota", &[]).run().success();
    contains(&run.stderr(), "VcpuLimitExceeded");
    contains(&run.stderr(), "waits in the queue");
    let doc = json(&run);
    assert_eq!(
        (doc["state"].as_str(), doc["run"].as_u64()),
        (Some("queued"), Some(1))
    );
    assert_eq!(proxy.run_instances().len(), 1, "no fallback helps a quota");
    // Not tried again before its time, by a launch as by a pass.
    let again = json(&launch(&w, &proxy.url, "quota", &[]).run().success());
    assert_eq!(again["state"], "queued");
    assert_eq!(proxy.run_instances().len(), 1);
    // Once the quota allows it and its time has come, the same run starts.
    proxy.set_faults(|f| f.quota = None);
    due(&w, "quota");
    let doc = json(&launch(&w, &proxy.url, "quota", &[]).run().success());
    assert_eq!(doc["run"], 1);
    assert_eq!(doc["launched"], true);
}

#[test]
fn a_spot_quota_falls_through_to_on_demand_under_spot_then_on_demand() {
    // New accounts often have no spot quota at all: under
    // spot-then-on-demand that is no reason to stop, under spot it is.
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            spot_quota: Some("MaxSpotInstanceCountExceeded"),
            ..Faults::default()
        },
    );
    let market = |m: &str| format!("instance.market={m}");
    let doc = json(
        &launch(
            &w,
            &proxy.url,
            "spot-quota",
            &["--set", &market("spot-then-on-demand")],
        )
        .run()
        .success(),
    );
    assert_eq!(doc["launched"], true);
    let calls = proxy.run_instances();
    assert!(
        calls.first().is_some_and(|c| c.ends_with(" spot"))
            && calls.last().is_some_and(|c| !c.ends_with(" spot")),
        "one spot request, then on demand: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.ends_with(" spot")).count(),
        1,
        "the quota is the account's: no other subnet is tried on spot"
    );
    let run = launch(&w, &proxy.url, "spot-only", &["--set", &market("spot")])
        .run()
        .success();
    contains(&run.stderr(), "MaxSpotInstanceCountExceeded");
    assert_eq!(
        json(&run)["state"],
        "queued",
        "under spot only, the job waits"
    );
}

#[test]
fn a_hundred_waiters_call_ec2_at_most_five_times_a_second() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    // A hundred running jobs (launched once, quickly).
    let mut ids = Vec::new();
    for batch in 0..5 {
        let children: Vec<Child> = (0..20)
            .map(|n| launch(&w, &w.moto.url, &format!("many-{}", batch * 20 + n), &[]).spawn())
            .collect();
        for child in children {
            let (exit, doc, stderr) = output(child);
            assert_eq!(exit, 0, "{stderr}");
            ids.push(doc["instance_id"].as_str().unwrap().to_string());
        }
    }
    // A hundred `launch --wait` with the default intervals attach to them.
    let waiters: Vec<Child> = (0..100)
        .map(|n| {
            w.bootforge(&proxy.url)
                .args([
                    "launch",
                    "traffic-sign-gpu",
                    "--json",
                    "--wait",
                    "--status-grace",
                    "1",
                ])
                .args(w.sets())
                .args(["--set", &format!("job_id=many-{n}")])
                .spawn()
        })
        .collect();
    // Past their start, count their calls for a minute.
    std::thread::sleep(Duration::from_secs(15));
    let before = proxy.count("DescribeInstances");
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let calls = proxy.count("DescribeInstances") - before;
    let rate = calls as f64 / start.elapsed().as_secs_f64();
    eprintln!("a hundred waiters: {calls} DescribeInstances in 60 s, {rate:.2} a second");
    assert!(rate <= 5.0, "{rate:.2} calls a second");
    for (n, id) in ids.iter().enumerate() {
        write_status(&w, &format!("many-{n}"), id, "succeeded");
    }
    for id in &ids {
        w.terminate(id);
    }
    for child in waiters {
        let (exit, _, stderr) = output(child);
        assert_eq!(exit, 0, "{stderr}");
    }
}

/// Moves `id`'s deadline tag to the past, as time would.
fn expire(w: &World, id: &str) {
    w.rt.block_on(async {
        w.client
            .create_tags()
            .resources(id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("bootforge:deadline")
                    .value("2001-01-01T00:00:00Z")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn reap_terminates_per_profile_and_reports_each_refusal() {
    let Some(w) = World::new() else { return };
    // The launching host may terminate g6-quick's instances, not these.
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            deny_terminate_profile: Some("traffic-sign-gpu".to_string()),
            ..Faults::default()
        },
    );
    let big = json(&launch(&w, &w.moto.url, "reap-big", &[]).run().success());
    let quick = json(
        &w.bootforge(&w.moto.url)
            .args(["launch", "g6-quick", "--json"])
            .args(QUICK)
            .args(w.sets())
            .args([
                "--set",
                "job_id=reap-quick",
                "--set",
                "instance.types=[g6.xlarge]",
            ])
            .run()
            .success(),
    );
    let (big, quick) = (
        big["instance_id"].as_str().unwrap().to_string(),
        quick["instance_id"].as_str().unwrap().to_string(),
    );
    expire(&w, &big);
    expire(&w, &quick);
    let run = w
        .bootforge(&proxy.url)
        .args(["reap", "--yes", "--json"])
        .run()
        .failure(1);
    let doc = json(&run);
    assert_eq!(doc["terminated"], serde_json::json!([quick]));
    assert_eq!(doc["refused"][0]["instance_id"], big.as_str());
    assert_eq!(doc["refused"][0]["profile"], "traffic-sign-gpu");
    assert!(
        doc["refused"][0]["error"]
            .as_str()
            .unwrap()
            .contains("UnauthorizedOperation")
    );
    assert!(w.live_with_job("reap-quick").is_empty());
    assert_eq!(
        w.live_with_job("reap-big").len(),
        1,
        "the refused one is untouched"
    );
    // Terminating by id goes the same way.
    let run = w
        .bootforge(&proxy.url)
        .args(["terminate", &big, "--json"])
        .run()
        .failure(1);
    assert_eq!(json(&run)["refused"][0]["instance_id"], big.as_str());
}
