//! `jobs` against the EC2 double: every job of the jobs folder, newest
//! first, with the outcome `launch --wait` reports, its attempts and their
//! markets, the cost summed over them and what spot saved; totals over the
//! window, not only the rows shown.

use std::time::Duration;

use serde_json::Value as Json;

use crate::Test;
use crate::launch::{World, json};
use crate::proxy::{Faults, Proxy};

fn launch(w: &World, endpoint: &str, profile: &str, job: &str, extra: &[&str]) -> Json {
    let mut t = w.bootforge(endpoint);
    t.args(["launch", profile, "--json"])
        .args(w.sets())
        .args(["--set", &format!("job_id={job}")])
        .args(extra);
    json(&t.run().success())
}

fn advance(w: &World, endpoint: &str, extra: &[&str]) -> crate::Run {
    let mut t = w.bootforge(endpoint);
    t.args(["advance", "--json", "--status-grace", "0"])
        .args(w.sets())
        .args(extra);
    t.run().success()
}

fn jobs(w: &World, extra: &[&str]) -> Json {
    let mut t: Test = w.bootforge("http://127.0.0.1:9");
    t.args(["jobs", "--json"]).args(w.sets()).args(extra);
    json(&t.run().success())
}

fn claim_of(w: &World, job: &str) -> Json {
    serde_json::from_str(
        &std::fs::read_to_string(w.logs.path().join(job).join("claim.json")).unwrap(),
    )
    .unwrap()
}

fn write_status(
    w: &World,
    job: &str,
    instance: &str,
    outcome: &str,
    exit_code: i32,
    message: &str,
) {
    let now = bootforge::clock::rfc3339(bootforge::clock::now());
    std::fs::write(
        w.logs.path().join(job).join("status.json"),
        serde_json::json!({"schema_version": 2, "job_id": job, "instance_id": instance,
            "outcome": outcome, "exit_code": exit_code, "final": true, "ended_at": now,
            "message": message})
        .to_string(),
    )
    .unwrap();
}

#[test]
fn jobs_lists_outcomes_the_cost_over_attempts_and_what_spot_saved() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let spot = [
        "--set",
        "instance.max_cost_usd=20",
        "--set",
        "job.retry={on: [interrupted], attempts: 3, on_demand_after: 2}",
    ];
    // A spot job interrupted twice, then succeeding on demand.
    let first = launch(&w, &proxy.url, "traffic-sign-gpu-spot", "priced", &spot);
    let mut id = first["instance_id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1100));
        proxy.end(
            &id,
            "Server.SpotInstanceTermination",
            "Server.SpotInstanceTermination: Spot instance termination",
        );
        advance(&w, &proxy.url, &spot);
        let next = claim_of(&w, "priced")["instance_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(next, id, "a next attempt");
        id = next;
    }
    std::thread::sleep(Duration::from_millis(1100));
    write_status(&w, "priced", &id, "succeeded", 0, "");
    proxy.power_off(&id);
    let ended = advance(&w, &proxy.url, &spot);
    assert!(ended.stdout().contains("\"priced\""), "{}", ended.stdout());
    // A job whose pipeline failed, one still running, one queued.
    let failed = launch(&w, &proxy.url, "traffic-sign-gpu", "failing", &[]);
    let failed_id = failed["instance_id"].as_str().unwrap();
    write_status(
        &w,
        "failing",
        failed_id,
        "failed",
        3,
        "the pipeline exited with 3",
    );
    proxy.power_off(failed_id);
    advance(&w, &proxy.url, &[]);
    let limit = ["--set", "job.max_running=1"];
    launch(&w, &proxy.url, "traffic-sign-gpu", "running", &limit);
    let queued = launch(&w, &proxy.url, "traffic-sign-gpu", "waiting", &limit);
    assert_eq!(queued["state"], "queued");

    let all = jobs(&w, &[]);
    let rows = all["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["job"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["waiting", "running", "failing", "priced"],
        "newest first"
    );
    let row = |job: &str| rows.iter().find(|r| r["job"] == job).unwrap().clone();
    let priced = row("priced");
    assert_eq!(priced["outcome"], "succeeded");
    let markets: Vec<&str> = priced["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["market"].as_str().unwrap())
        .collect();
    assert_eq!(markets, ["spot", "spot", "on-demand"]);
    let sum: f64 = priced["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(sum > 0.0);
    assert!((priced["cost_usd"].as_f64().unwrap() - sum).abs() < 1e-9);
    // The spot attempts against the on-demand price of their time.
    let saving: f64 = priced["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["market"] == "spot")
        .map(|a| {
            let hours = (a["ended_at"].as_u64().unwrap() - a["launched_at"].as_u64().unwrap())
                as f64
                / 3600.0;
            hours * 1.861 - a["cost_usd"].as_f64().unwrap()
        })
        .sum();
    assert!(saving > 0.0);
    assert!((priced["spot_saving_usd"].as_f64().unwrap() - saving).abs() < 1e-9);
    let failing = row("failing");
    assert_eq!(
        (failing["outcome"].as_str(), failing["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    assert_eq!(failing["message"], "the pipeline exited with 3");
    assert_eq!(row("running")["state"], "live");
    assert_eq!(row("waiting")["queued"]["place"], 1);
    let totals = &all["totals"];
    assert_eq!(totals["jobs"], 4);
    assert_eq!(
        totals["by_outcome"],
        serde_json::json!({"failed": 1, "live": 1, "queued": 1, "succeeded": 1})
    );
    assert!(totals["spot_saving_usd"].as_f64().unwrap() >= saving - 1e-9);
    // The totals cover the window, whatever is shown.
    let one = jobs(&w, &["--limit", "1"]);
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    assert_eq!(
        (one["matched"].as_u64(), one["totals"]["jobs"].as_u64()),
        (Some(4), Some(4))
    );
    let live = jobs(&w, &["--state", "live"]);
    let names: Vec<&str> = live["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["waiting", "running"]);
    // Acknowledged, the ended ones stay listed (from the month's file).
    let mut ack = w.bootforge(&proxy.url);
    ack.args(["advance", "--ack", "priced:1", "--ack", "failing:1"])
        .args(w.sets());
    ack.run().success();
    let after = jobs(&w, &[]);
    for key in ["jobs", "by_outcome", "spot_saving_usd"] {
        assert_eq!(after["totals"][key], all["totals"][key], "{key}");
    }
    let ended = |list: &Json| -> Vec<Json> {
        list["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "ended")
            .cloned()
            .collect()
    };
    assert_eq!(ended(&after), ended(&all), "the same ended rows");
    // The text form says the same.
    let mut text = w.bootforge("http://127.0.0.1:9");
    text.args(["jobs"]).args(w.sets());
    let out = text.run().success().stdout();
    crate::contains(&out, "4 jobs since");
    crate::contains(&out, "1 succeeded");
    crate::contains(&out, "queued #1");
}

/// A history of `count` ended and reported jobs (one every 20 minutes
/// back from now, a thousand of them spot) and `live` running ones, as
/// claims in a jobs folder on local disk.
fn history(dir: &std::path::Path, count: u64, live: u64) {
    let now = bootforge::clock::now();
    for n in 0..count + live {
        let job = format!("job-{n:05}");
        let ended = now - n * 1200;
        let launched = ended - 3600;
        let mut c = bootforge::aws::claim::Claim::new("traffic-sign-gpu", &job, 1, "sha", launched);
        c.instance_id = Some(format!("i-{n:017x}"));
        if n >= live {
            let spot = n % 10 == 0;
            let price = if spot { 0.67 } else { 1.861 };
            c.end = Some(serde_json::json!({
                "wait": {"outcome": if n % 7 == 0 { "failed" } else { "succeeded" }, "exit_code": 0,
                    "status": {"exit_code": 0}},
                "attempts": [{"attempt": 1, "instance_id": c.instance_id, "instance_type": "g6e.xlarge",
                    "market": if spot { "spot" } else { "on-demand" }, "price_per_hour": price,
                    "launched_at": launched, "ended_at": ended, "outcome": "succeeded",
                    "state_reason": null, "cost_usd": price}],
                "cost_usd": price
            }));
            c.acknowledged = Some(bootforge::aws::claim::Acknowledged {
                run: 1,
                at: ended,
                by: "history:1".to_string(),
            });
        }
        let d = dir.join(&job);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("claim.json"), serde_json::to_string(&c).unwrap()).unwrap();
    }
}

/// `bootforge jobs ARGS` under strace: (wall seconds, files opened).
fn traced(dir: &std::path::Path, args: &[&str]) -> (f64, usize) {
    let trace = dir.join(".trace");
    let start = std::time::Instant::now();
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_bootforge"))
        .args(["jobs", "--set"])
        .arg(format!("job.host_log_dir={}", dir.display()))
        .args(args)
        .current_dir(crate::root())
        .output()
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opened = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("openat(") && !l.contains("= -1"))
        .count();
    (took, opened)
}

/// The benchmark of `jobs` (ignored: run on purpose, with `--run-ignored
/// only -E 'test(jobs_benchmark)' --no-capture`): the wall time and the
/// files opened by `jobs --limit 50` over histories of 1,000 and 10,000
/// job directories on local disk, 20 of them live.
#[test]
#[ignore]
fn jobs_benchmark_over_ten_thousand_job_directories() {
    if !crate::have("strace") {
        return;
    }
    for count in [1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        history(dir.path(), count, 20);
        let (first, first_opened) = traced(dir.path(), &["--limit", "50", "--json"]);
        let runs: Vec<(f64, usize)> = (0..5)
            .map(|_| traced(dir.path(), &["--limit", "50", "--json"]))
            .collect();
        let all = traced(dir.path(), &["--limit", "50", "--since", "all", "--json"]);
        eprintln!(
            "benchmark: {count} job directories: the first `jobs --limit 50` (builds the index) {first:.3}s, {first_opened} files opened; \
             then {:?} s, {:?} files opened; with --since all {:.3}s, {} files opened",
            runs.iter()
                .map(|(t, _)| (t * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>(),
            runs.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            all.0,
            all.1
        );
    }
}
