//! `launch --local`: a job rehearsed on this machine, its instance a
//! container of the smoke image booted from the same payload, a temporary
//! folder as the EFS; and a real Celery worker, with a real Redis as broker
//! and result backend, running the README's task against it.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::Test;

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

#[test]
fn advance_follows_a_local_job_to_its_end() {
    let Some(w) = World::new() else { return };
    let started = json(&w.launch("adv-1", &[]).run().success());
    assert_eq!(started["launched"], true);
    let advance = |extra: &[&str]| {
        let mut t = w.bootforge();
        t.args(["advance", "--json", "--local", "--efs"])
            .arg(w.efs.path())
            .args(extra);
        t.run().success()
    };
    let start = Instant::now();
    let report = loop {
        let pass = advance(&[]);
        if let Some(line) = pass.stdout().lines().find(|l| l.contains("\"adv-1\"")) {
            break serde_json::from_str::<Json>(line).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no pass reported the job: {}",
            pass.stderr()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(report["instance_id"], started["instance_id"]);
    assert_eq!(report["wait"]["outcome"], "succeeded", "{report:#}");
    assert_eq!(report["wait"]["source"], "efs");
    let on_folder: Json = serde_json::from_str(
        &std::fs::read_to_string(w.job_dir("adv-1").join("status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["wait"]["status"], on_folder);
    advance(&["--ack", "adv-1:1"]);
    assert!(
        !advance(&[]).stdout().contains("adv-1"),
        "an acknowledged end is reported no more"
    );
    assert_eq!(w.instances_of("adv-1"), 1);
    // Listed with its outcome; a rehearsal has no price.
    let mut jobs = w.bootforge();
    jobs.args(["jobs", "--json", "--local", "--efs"])
        .arg(w.efs.path());
    let list = json(&jobs.run().success());
    let row = &list["rows"][0];
    assert_eq!(
        (
            row["job"].as_str(),
            row["outcome"].as_str(),
            row["state"].as_str()
        ),
        (Some("adv-1"), Some("succeeded"), Some("ended"))
    );
    assert_eq!(row["cost_usd"], Json::Null);
    assert_eq!(
        list["totals"]["by_outcome"],
        serde_json::json!({"succeeded": 1})
    );
    assert_eq!(list["totals"]["unpriced"], 1);
}

/// The package's Celery integration on local rehearsals: a real Redis, a
/// prefork worker with beat running `examples/celery_tasks.py`, every job a
/// container; each job's end delivered to the example's `job_done` once.
#[test]
fn celery_jobs_rehearse_end_to_end() {
    let Some(w) = World::new() else { return };
    let Some(celery) = crate::celery::local_deployment(w.efs.path(), w.state.path()) else {
        return;
    };
    let _worker = celery.worker("main", 2);
    // Three jobs, the third sent twice at once.
    let sent = celery.send(&crate::celery::jobs(&[
        "e2e-ok", "fail-e2e", "e2e-dup", "e2e-dup",
    ]));
    assert!(
        sent.iter().all(|r| r["state"] == "launched"),
        "each task returns once its job is launched: {sent:#?}"
    );
    assert_eq!(
        sent[2]["instance"], sent[3]["instance"],
        "one job, one instance"
    );
    let jobs = crate::celery::jobs(&["e2e-ok", "fail-e2e", "e2e-dup"]);
    let got = celery.until_delivered(&jobs, Duration::from_secs(300));
    for (job, n) in crate::celery::per_job(&got) {
        assert_eq!(n, 1, "{job}: delivered once");
    }
    let of = |job: &str| got.iter().find(|d| d["job_id"] == job).unwrap().clone();
    assert_eq!(of("e2e-ok")["outcome"], "succeeded");
    assert_eq!(of("fail-e2e")["outcome"], "failed");
    assert_eq!(of("fail-e2e")["status"]["exit_code"], 3);
    assert_eq!(of("e2e-dup")["outcome"], "succeeded");
    for job in &jobs {
        assert_eq!(w.instances_of(job), 1, "{job}: one container");
        let status: Json = serde_json::from_str(
            &std::fs::read_to_string(w.job_dir(job).join("status.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            status,
            of(job)["status"],
            "{job}: the callback holds the run's own status"
        );
    }
    assert!(
        w.ps(&["e2e-ok", "fail-e2e", "e2e-dup"]).is_empty(),
        "every container powered off and is gone"
    );
}
