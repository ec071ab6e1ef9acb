//! `advance` against the EC2 double: one pass over every live job of a
//! jobs folder asks EC2 once (and once more, by id, for what the tag filter
//! does not show yet), reports each job that ended until its end is
//! acknowledged, continues retry policies once however many passes run,
//! starts queued jobs in order, and reports a job EC2 no longer lists from
//! its status on the EFS.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bootforge::aws::claim::{Claim, ClaimedRequest};
use serde_json::Value as Json;

use crate::Test;
use crate::launch::{World, json};
use crate::proxy::{Faults, Proxy};

/// `launch PROFILE --set job_id=JOB` without waiting, in the emulated
/// account, through `endpoint`.
fn launch(w: &World, endpoint: &str, profile: &str, job: &str, extra: &[&str]) -> Test {
    let mut t = w.bootforge(endpoint);
    t.args(["launch", profile, "--json"])
        .args(w.sets())
        .args(["--set", &format!("job_id={job}")])
        .args(extra);
    t
}

/// One pass: `advance --json` over the emulated account's jobs folder.
fn advance(w: &World, endpoint: &str, extra: &[&str]) -> Test {
    let mut t = w.bootforge(endpoint);
    t.args(["advance", "--json", "--status-grace", "0"])
        .args(w.sets())
        .args(extra);
    t
}

/// The reports a pass printed, one JSON line each.
fn reports(run: &crate::Run) -> Vec<Json> {
    run.stdout()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn job_dir(w: &World, job: &str) -> PathBuf {
    w.logs.path().join(job)
}

fn claim_of(w: &World, job: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(job_dir(w, job).join("claim.json")).unwrap())
        .unwrap()
}

/// What the instance writes at its end: a status of the runner's shape.
fn write_status(w: &World, job: &str, instance: &str, outcome: &str, exit_code: i32) {
    let dir = job_dir(w, job);
    std::fs::create_dir_all(&dir).unwrap();
    let now = bootforge::clock::rfc3339(bootforge::clock::now());
    std::fs::write(
        dir.join("status.json"),
        serde_json::json!({"schema_version": 2, "job_id": job, "instance_id": instance,
            "outcome": outcome, "exit_code": exit_code, "final": true, "ended_at": now,
            "message": if exit_code == 0 { "" } else { "the pipeline failed" }})
        .to_string(),
    )
    .unwrap();
}

fn now() -> u64 {
    bootforge::clock::now()
}

/// A claim on job `job`'s run 1, its instance `instance` launched
/// `ago` seconds ago on demand, as `launch` writes it.
fn claim(job: &str, instance: &str, ago: u64) -> Claim {
    let mut c = Claim::new("traffic-sign-gpu", job, 1, "sha", now() - ago);
    c.heartbeat = now() - ago;
    c.region = Some("us-east-2".to_string());
    c.instance_id = Some(instance.to_string());
    c.requests.push(ClaimedRequest {
        client_token: format!("token-{job}"),
        instance_type: "g6e.xlarge".to_string(),
        subnet: "subnet-1".to_string(),
        spot: false,
        result: Some(format!("launched {instance}")),
        price_per_hour: Some(1.861),
    });
    c
}

fn write_claim(w: &World, c: &Claim) {
    let dir = job_dir(w, &c.job);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("claim.json"),
        serde_json::to_string_pretty(c).unwrap(),
    )
    .unwrap();
}

/// `count` instances started in one call, as the claims' instances.
fn instances(w: &World, count: i32) -> Vec<String> {
    w.rt.block_on(async {
        let out = w
            .client
            .run_instances()
            .image_id(&w.ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::G6eXlarge)
            .subnet_id(&w.subnets[0])
            .min_count(count)
            .max_count(count)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("bootforge:job")
                            .value("many")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.instances()
            .iter()
            .map(|i| i.instance_id().unwrap().to_string())
            .collect()
    })
}

#[test]
fn one_pass_over_a_hundred_live_jobs_asks_ec2_at_most_twice() {
    let Some(w) = World::new() else { return };
    let ids = instances(&w, 100);
    for (n, id) in ids.iter().enumerate() {
        write_claim(&w, &claim(&format!("live-{n:03}"), id, 600));
    }
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            hide_for: Duration::from_secs(3600),
            ..Faults::default()
        },
    );
    // One more, launched through the double: the tag filter does not show
    // it yet.
    let fresh = json(
        &launch(&w, &proxy.url, "traffic-sign-gpu", "fresh-1", &[])
            .run()
            .success(),
    );
    let before = proxy.count("DescribeInstances");
    let pass = advance(&w, &proxy.url, &[]).run().success();
    assert_eq!(
        proxy.count("DescribeInstances") - before,
        2,
        "one call by tag, one by id for the instance the filter does not show yet"
    );
    assert!(
        reports(&pass).is_empty(),
        "every job runs: {}",
        pass.stdout()
    );
    assert_eq!(proxy.run_instances_at().len(), 1, "nothing launched again");
    assert_eq!(
        claim_of(&w, "fresh-1")["instance_id"],
        fresh["instance_id"],
        "the hidden instance is not taken for gone"
    );
    // Without a hidden instance: one call.
    let moto = advance(&w, &w.moto.url, &[]).run().success();
    assert!(reports(&moto).is_empty());
    let index: Json = serde_json::from_str(
        &std::fs::read_to_string(w.logs.path().join(".bootforge/live.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(index["jobs"].as_array().unwrap().len(), 101);
    let last: Json = serde_json::from_str(
        &std::fs::read_to_string(w.logs.path().join(".bootforge/advance.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(last["followed"], 101);
}

#[test]
fn a_job_ec2_no_longer_lists_is_reported_from_its_status_until_acknowledged() {
    let Some(w) = World::new() else { return };
    // Launched two hours ago; EC2 forgot its instance long since.
    let gone = "i-0123456789abcdef0";
    write_claim(&w, &claim("forgotten-1", gone, 7200));
    write_status(&w, "forgotten-1", gone, "failed", 1);
    let first = advance(&w, &w.moto.url, &[]).run().success();
    let ended = reports(&first);
    assert_eq!(ended.len(), 1, "{}", first.stdout());
    let r = &ended[0];
    assert_eq!(
        (
            r["job"].as_str(),
            r["run"].as_u64(),
            r["wait"]["outcome"].as_str()
        ),
        (Some("forgotten-1"), Some(1), Some("failed"))
    );
    assert_eq!(r["wait"]["source"], "efs");
    assert_eq!(r["wait"]["status"]["message"], "the pipeline failed");
    // Priced until its status's end, not until now.
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - 1.861 * 2.0).abs() < 0.01, "{cost}");
    // Reported by every pass until acknowledged; the end is the same.
    let again = reports(&advance(&w, &w.moto.url, &[]).run().success());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["wait"], r["wait"]);
    let mut ack = w.bootforge(&w.moto.url);
    ack.args(["advance", "--ack", "forgotten-1:1"])
        .args(w.sets());
    ack.run().success();
    assert!(reports(&advance(&w, &w.moto.url, &[]).run().success()).is_empty());
    assert!(claim_of(&w, "forgotten-1")["acknowledged"]["run"] == 1);
    // `launch` of the job reports that end, and starts nothing.
    let relaunch = launch(&w, &w.moto.url, "traffic-sign-gpu", "forgotten-1", &[]).run();
    assert_eq!(relaunch.code(), 1, "{}", relaunch.stderr());
    let doc = json(&relaunch);
    assert_eq!(
        (doc["launched"].as_bool(), doc["wait"]["outcome"].as_str()),
        (Some(false), Some("failed"))
    );
    assert!(w.instances(&[]).is_empty());
    // A wrong acknowledgement is a usage error.
    let mut bad = w.bootforge(&w.moto.url);
    bad.args(["advance", "--ack", "forgotten-1"]).args(w.sets());
    bad.run().failure(2);
}

#[test]
fn a_claim_from_before_acknowledgements_is_never_announced() {
    let Some(w) = World::new() else { return };
    let gone = "i-0fedcba9876543210";
    let mut old = serde_json::to_value(claim("old-1", gone, 7200)).unwrap();
    let fields = old.as_object_mut().unwrap();
    for field in ["schema_version", "sets", "region", "retry"] {
        fields.remove(field);
    }
    std::fs::create_dir_all(job_dir(&w, "old-1")).unwrap();
    std::fs::write(job_dir(&w, "old-1").join("claim.json"), old.to_string()).unwrap();
    write_status(&w, "old-1", gone, "succeeded", 0);
    let pass = advance(&w, &w.moto.url, &[]).run().success();
    assert!(
        reports(&pass).is_empty(),
        "the first pass after an upgrade announces no job of history: {}",
        pass.stdout()
    );
    // Indexed as ended and reported, with its outcome and cost.
    let month = &bootforge::clock::rfc3339(now())[..7];
    let ended: Json = serde_json::from_str(
        &std::fs::read_to_string(w.logs.path().join(format!(".bootforge/ended-{month}.json")))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ended["jobs"][0]["job"], "old-1");
    assert_eq!(ended["jobs"][0]["end"]["outcome"], "succeeded");
}

/// Job `job` launched on spot with the profiles and snippets in `library`,
/// then interrupted by EC2: the instance it had.
fn spot_job_interrupted(w: &World, proxy: &Proxy, job: &str, library: &std::path::Path) -> String {
    let first = json(
        &launch(
            w,
            &proxy.url,
            "traffic-sign-gpu-spot",
            job,
            &["--set", "instance.max_cost_usd=20"],
        )
        .current_dir(library)
        .run()
        .success(),
    );
    let id = first["instance_id"].as_str().unwrap().to_string();
    proxy.end(
        &id,
        "Server.SpotInstanceTermination",
        "Server.SpotInstanceTermination: Spot instance termination",
    );
    id
}

#[test]
fn two_passes_at_once_start_one_next_attempt_of_an_interrupted_job() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let id = spot_job_interrupted(&w, &proxy, "twice-1", crate::root());
    let passes: Vec<_> = (0..2)
        .map(|_| advance(&w, &proxy.url, &[]).spawn())
        .collect();
    for p in passes {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "the job goes on: nothing ended");
    }
    let launches = proxy.run_instances_at();
    assert_eq!(
        launches.len(),
        2,
        "the first attempt and one next: {launches:?}"
    );
    let c = claim_of(&w, "twice-1");
    assert_eq!(c["attempt"], 2);
    assert_eq!(c["earlier"][0]["outcome"], "interrupted");
    assert_ne!(c["instance_id"], id.as_str());
    // A third pass does nothing more.
    advance(&w, &proxy.url, &[]).run().success();
    assert_eq!(proxy.run_instances_at().len(), 2);
}

/// A copy of the repository's profiles and snippets, to change under a job.
fn own_library() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["profiles", "snippets"] {
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(crate::root().join(folder))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

#[test]
fn a_job_whose_profile_changed_is_reported_with_the_reason_never_relaunched() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let library = own_library();
    spot_job_interrupted(&w, &proxy, "changed-1", library.path());
    // An upgrade while the job ran: its profile now gives another payload.
    let profile = library.path().join("profiles/traffic-sign-gpu.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains("  timeout: 120m\n"));
    std::fs::write(
        &profile,
        text.replace("  timeout: 120m\n", "  timeout: 90m\n"),
    )
    .unwrap();

    let pass = advance(&w, &proxy.url, &[])
        .current_dir(library.path())
        .run()
        .success();
    let ended = reports(&pass);
    assert_eq!(ended.len(), 1, "{}", pass.stdout());
    assert_eq!(ended[0]["job"], "changed-1");
    assert_eq!(ended[0]["wait"]["outcome"], "interrupted");
    let why = ended[0]["retry"].as_str().unwrap();
    assert!(
        why.contains("would start attempt 2 of 3")
            && why.contains("now compiles another payload")
            && why.contains("not continued"),
        "{why}"
    );
    assert_eq!(proxy.run_instances_at().len(), 1, "never relaunched");
    // Nor by a later pass, and nor as a new run.
    advance(&w, &proxy.url, &[])
        .current_dir(library.path())
        .run()
        .success();
    assert_eq!(proxy.run_instances_at().len(), 1);
    assert_eq!(claim_of(&w, "changed-1")["run"], 1);
}

#[test]
fn jobs_beyond_max_running_queue_and_start_in_order_as_others_end() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(&w.moto.address, Faults::default());
    let limit = ["--set", "job.max_running=1"];
    let a = json(
        &launch(&w, &proxy.url, "traffic-sign-gpu", "q-a", &limit)
            .run()
            .success(),
    );
    assert!(a["instance_id"].is_string(), "{a:#}");
    for (job, place) in [("q-b", 1), ("q-c", 2)] {
        let q = json(
            &launch(&w, &proxy.url, "traffic-sign-gpu", job, &limit)
                .run()
                .success(),
        );
        assert_eq!(q["state"], "queued", "{q:#}");
        assert_eq!(q["instance_id"], Json::Null);
        assert_eq!(q["queued"]["place"], place);
        assert!(
            q["queued"]["reason"]
                .as_str()
                .unwrap()
                .contains("max_running"),
            "{q:#}"
        );
    }
    let mut status = w.bootforge(&proxy.url);
    status
        .args(["status", "q-c", "--json"])
        .args(w.sets())
        .args(limit);
    let s = json(&status.run().success());
    assert_eq!(
        (s["phase"].as_str(), s["queued"]["place"].as_u64()),
        (Some("queued"), Some(2))
    );
    // Nothing ends: a pass starts nothing.
    advance(&w, &proxy.url, &limit).run().success();
    assert_eq!(proxy.run_instances_at().len(), 1);
    // q-a ends: the pass reports it and starts q-b, not q-c.
    let id = a["instance_id"].as_str().unwrap();
    write_status(&w, "q-a", id, "succeeded", 0);
    proxy.power_off(id);
    let pass = advance(&w, &proxy.url, &limit).run().success();
    let ended = reports(&pass);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["job"], "q-a");
    assert_eq!(proxy.run_instances_at().len(), 2);
    assert!(claim_of(&w, "q-b")["instance_id"].is_string());
    assert!(claim_of(&w, "q-c")["queued"].is_object());
    assert_eq!(claim_of(&w, "q-c")["instance_id"], Json::Null);
}

#[test]
fn a_quota_queues_the_job_and_a_pass_launches_it_once_its_time_comes() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            quota: Some("VcpuLimitExceeded"),
            ..Faults::default()
        },
    );
    let q = launch(&w, &proxy.url, "traffic-sign-gpu", "quota-1", &[]).run();
    assert_eq!(q.code(), 0, "queued, not failed: {}", q.stderr());
    let q = json(&q);
    assert_eq!(q["state"], "queued");
    let reason = q["queued"]["reason"].as_str().unwrap();
    assert!(reason.contains("VcpuLimitExceeded"), "{reason}");
    assert!(q["queued"]["retry_at"].is_string());
    // The quota allows it now; the job is tried again once its time comes
    // (here: made to have come).
    proxy.set_faults(|f| f.quota = None);
    advance(&w, &proxy.url, &[]).run().success();
    assert_eq!(
        claim_of(&w, "quota-1")["instance_id"],
        Json::Null,
        "not before its time"
    );
    let path = job_dir(&w, "quota-1").join("claim.json");
    let mut c = claim_of(&w, "quota-1");
    c["queued"]["retry_at"] = (now() - 1).into();
    std::fs::write(&path, c.to_string()).unwrap();
    advance(&w, &proxy.url, &[]).run().success();
    let c = claim_of(&w, "quota-1");
    assert!(c["instance_id"].is_string(), "{c:#}");
    assert_eq!(c["queued"], Json::Null);
    assert_eq!(w.live_with_job("quota-1").len(), 1);
}

#[test]
fn the_pass_never_waits_and_records_when_it_ran() {
    let Some(w) = World::new() else { return };
    let proxy = Proxy::start(
        &w.moto.address,
        Faults {
            pending_for: Duration::from_secs(3600),
            ..Faults::default()
        },
    );
    json(
        &launch(&w, &proxy.url, "traffic-sign-gpu", "pending-1", &[])
            .run()
            .success(),
    );
    let at = Instant::now();
    advance(&w, &proxy.url, &["--every", "5"]).run().success();
    assert!(
        at.elapsed() < Duration::from_secs(60),
        "a pending instance is looked at again by the next pass, not waited for"
    );
    let last: Json = serde_json::from_str(
        &std::fs::read_to_string(w.logs.path().join(".bootforge/advance.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(last["every"], 5);
    // Passes that stopped coming are told by `status`.
    let path = w.logs.path().join(".bootforge/advance.json");
    let mut stale = last.clone();
    stale["at_epoch"] = (now() - 60).into();
    std::fs::write(&path, stale.to_string()).unwrap();
    let mut status = w.bootforge(&proxy.url);
    status
        .args(["status", "pending-1", "--json"])
        .args(w.sets());
    let s = json(&status.run().success());
    assert!(
        s["note"]
            .as_str()
            .unwrap()
            .contains("nothing has followed the jobs"),
        "{s:#}"
    );
}

/// `bootforge ARGS` run by a Python wrapper that prints the child's wall
/// time and peak RSS: (stdout of bootforge, seconds, MiB).
fn measured(w: &World, endpoint: &str, args: &[String]) -> (String, f64, f64) {
    let wrapper = "import resource, subprocess, sys, time\n\
        start = time.monotonic()\n\
        out = subprocess.run(sys.argv[1:], capture_output=True)\n\
        took = time.monotonic() - start\n\
        sys.stderr.buffer.write(out.stderr)\n\
        assert out.returncode == 0, out.returncode\n\
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n\
        print(f'{took} {peak / 1024}')\n\
        sys.stdout.buffer.write(out.stdout)\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(wrapper)
        .arg(env!("CARGO_BIN_EXE_bootforge"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-2")
        .current_dir(crate::root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (first, rest) = text.split_once('\n').unwrap();
    let (took, peak) = first.split_once(' ').unwrap();
    let _ = w;
    (
        rest.to_string(),
        took.parse().unwrap(),
        peak.parse().unwrap(),
    )
}

/// The benchmark of one pass (ignored: run on purpose, with `--run-ignored
/// only -E 'test(advance_benchmark)' --no-capture`): a jobs folder on local
/// disk with 1,000 claims, 900 of them ended and reported, 100 live on
/// instances EC2 (moto) runs. The first pass reads every claim once to
/// build the index; the passes after it read the live jobs only.
#[test]
#[ignore]
fn advance_benchmark_one_pass_over_a_thousand_claims_of_which_a_hundred_live() {
    let Some(w) = World::new() else { return };
    let ids = instances(&w, 100);
    for (n, id) in ids.iter().enumerate() {
        write_claim(&w, &claim(&format!("live-{n:03}"), id, 600));
    }
    for n in 0..900 {
        let job = format!("done-{n:03}");
        let id = format!("i-{n:017x}");
        let mut c = claim(&job, &id, 86_400 + n * 60);
        write_status(&w, &job, &id, "succeeded", 0);
        c.end = Some(
            serde_json::json!({"wait": {"outcome": "succeeded", "exit_code": 0},
            "attempts": [], "cost_usd": 1.0}),
        );
        c.acknowledged = Some(bootforge::aws::claim::Acknowledged {
            run: 1,
            at: now(),
            by: "bench:1".to_string(),
        });
        write_claim(&w, &c);
    }
    let mut args: Vec<String> = ["advance", "--json", "--status-grace", "0"]
        .map(str::to_string)
        .to_vec();
    args.extend(w.sets());
    let (out, first, first_rss) = measured(&w, &w.moto.url, &args);
    assert!(out.trim().is_empty(), "{out}");
    let mut steady = Vec::new();
    for _ in 0..5 {
        steady.push(measured(&w, &w.moto.url, &args));
    }
    let describe = Instant::now();
    w.instances(&[("tag-key", "bootforge:job")]);
    let one_describe = describe.elapsed().as_secs_f64();
    eprintln!(
        "benchmark: first pass (builds the index from 1,000 claims) {first:.3}s, peak RSS {first_rss:.1} MiB; \
         the next five passes {:?} s, peak RSS {:?} MiB; one DescribeInstances of moto's 100 instances takes {one_describe:.3}s of it",
        steady
            .iter()
            .map(|(_, t, _)| (t * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        steady
            .iter()
            .map(|(_, _, r)| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
    );
}
