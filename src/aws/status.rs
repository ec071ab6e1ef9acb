//! `status JOB` and `logs JOB`: a job as its directory tells it (the
//! launcher's claim, the runner's status, the log), with the instance's
//! state as EC2 (or the local engine) gives it. Reading and summing up are
//! here; asking EC2 is the caller's.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::aws::claim::{CLAIM_FILE, Claim, EndedAttempt};
use crate::check::catalog;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::diagnostics::{Error, Result};

/// A job now, as `status` shows it (`--json` prints it).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct JobStatus {
    pub job: String,
    pub profile: String,
    pub job_dir: PathBuf,
    pub run: u32,
    pub attempt: u32,
    /// The retry policy's attempts in all (1 without one).
    pub max_attempts: u32,
    pub instance_id: Option<String>,
    /// The instance's state as EC2 (or the local engine) gives it; absent
    /// when it was not asked or did not say.
    pub instance_state: Option<String>,
    /// `spot` or `on-demand`, and its price an hour.
    pub market: Option<String>,
    pub price_per_hour: Option<f64>,
    /// The current attempt's launch (RFC 3339).
    pub launched_at: String,
    /// `launched` until the runner's log reaches the EFS (the instance
    /// boots and mounts it), then the runner's phase (`deps`, `gpu`, `run`,
    /// `finalizing`), `interrupted` once the runner wrote a spot notice's
    /// interim status, `ended` once its status is final.
    pub phase: String,
    /// How long the runner's phase has lasted, seconds (while it runs).
    pub phase_seconds: Option<u64>,
    /// When the runner's log on the EFS last grew (RFC 3339), while it runs.
    pub log_written_at: Option<String>,
    /// How long the attempt has run (to its end, once it has ended), seconds.
    pub seconds: u64,
    /// What looks wrong, when something does.
    pub note: Option<String>,
    /// What the attempt has cost so far (runtime × price), and with the
    /// run's earlier attempts.
    pub cost_so_far: Option<f64>,
    pub run_cost_so_far: Option<f64>,
    /// The job's outcome, once its status is final.
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    /// This attempt's status.json, interim (a spot notice) or final.
    #[schemars(with = "Option<RunStatus>")]
    pub status: Option<Json>,
    /// The run's earlier attempts.
    pub earlier: Vec<EndedAttempt>,
}

/// A run's `status.json`, as the runner writes it on the instance
/// (`snippets/shutdown-trap/status.py`): the shape `launch --wait` and
/// `status` pass on as they read it. The runner's tests hold what it writes
/// to this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunStatus {
    pub job_id: String,
    pub profile: String,
    /// The run's number, when the launcher's claim gave it.
    pub run: Option<u32>,
    pub instance_id: String,
    pub boot_id: String,
    pub instance_type: String,
    /// `succeeded`, `failed`, `timed_out`, `mount_failed`, `deps_failed`,
    /// `gpu_missing` or `interrupted`.
    pub outcome: String,
    pub exit_code: i64,
    /// Why it ended so, for people; empty when it succeeded.
    pub message: String,
    /// Each phase that ran (`mount`, `deps`, `gpu`, `run`) and its seconds.
    pub phases: std::collections::BTreeMap<String, u64>,
    pub gpu: Option<Gpu>,
    /// The spot interruption notice, when one came.
    pub notice: Option<Notice>,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC; absent (null) while the status is interim.
    pub ended_at: Option<String>,
    /// False for the interim status a spot notice writes at once.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The run's log on the EFS.
    pub log: String,
    /// The attempt of the run this instance is, from the launcher's claim.
    pub attempt: Option<u32>,
    /// `spot` or `on-demand`, and its price an hour, from the claim.
    pub market: Option<String>,
    pub price_per_hour: Option<f64>,
    /// The requirements' environment, when there were requirements.
    #[serde(default)]
    pub environment: Option<Environment>,
}

/// How the requirements' environment was had, and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// `installed`, `restored` (from the EFS cache), `rebuilt` (over a
    /// damaged cache entry) or `failed` (the installer failed; the job went on).
    pub how: String,
    /// Its files and bytes, when they were counted.
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    /// The seconds it took, to the millisecond (the `deps` phase; `phases`
    /// has it in whole seconds). Absent from statuses written before it was.
    #[serde(default)]
    pub seconds: Option<f64>,
}

/// The GPU `nvidia-smi` named (empty before the `gpu` phase ran).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub name: String,
    pub driver: String,
}

/// A spot interruption notice, as the instance read it from IMDS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// IMDS's `action`: `terminate`, `stop` or `hibernate`.
    pub action: String,
    /// IMDS's `time`, RFC 3339, as it gave it.
    pub time: Option<String>,
    /// The action's time, seconds since the epoch (two minutes after the
    /// notice when IMDS's time could not be read).
    pub action_epoch: u64,
    /// When the instance read the notice, RFC 3339.
    pub noticed_at: String,
}

/// What the job's directory holds.
#[derive(Debug, Clone)]
pub struct JobFiles {
    pub dir: PathBuf,
    pub claim: Claim,
    pub status: Option<Json>,
    /// The claim's instance's progress, from its `job.log` on the EFS.
    pub progress: Option<Progress>,
}

/// How far the runner has come, as its log on the EFS says: every phase's
/// start and end is a line of it (`… bootforge[JOB] phase run: start`), and
/// every line of the log is a write to the EFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The phase the runner is in (`mount`, `deps`, `gpu`, `run`), or
    /// `finalizing` once the pipeline has ended.
    pub phase: String,
    /// When that phase started, seconds since the epoch.
    pub since: u64,
    /// When the log last grew, seconds since the epoch.
    pub written: Option<u64>,
}

/// The runner's progress from the text of its log, `job` being its job id.
pub fn progress_of(log: &str, job: &str) -> Option<(String, u64)> {
    let tag = format!(" bootforge[{job}] phase ");
    let mut last = None;
    for line in log.lines() {
        let Some((stamp, rest)) = line.split_once(&tag) else {
            continue;
        };
        let Some(at) = parse_rfc3339(stamp.trim()) else {
            continue;
        };
        if let Some(name) = rest.strip_suffix(": start") {
            last = Some((name.to_string(), at));
        } else if rest.starts_with("run: done") {
            last = Some(("finalizing".to_string(), at));
        }
    }
    last
}

/// The progress in `dir`'s `job.log` when its `run-id` is `instance`'s.
fn progress(dir: &Path, job: &str, instance: Option<&str>) -> Option<Progress> {
    let run_id = std::fs::read_to_string(dir.join("run-id")).ok()?;
    if run_id.split_whitespace().next() != instance {
        return None;
    }
    let path = dir.join("job.log");
    let (phase, since) = progress_of(&std::fs::read_to_string(&path).ok()?, job)?;
    let written = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Some(Progress {
        phase,
        since,
        written,
    })
}

/// A log that has not grown for this long while the instance runs is worth
/// a note: a quiet pipeline, or an instance that stopped working.
pub const QUIET_LOG: u64 = 30 * 60;

fn read_json(path: &Path) -> Option<Json> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// The files of job `job` in `host_dir` (its `host_log_dir`): its claim,
/// and the status of the claim's instance (never an earlier attempt's).
pub fn read(host_dir: &Path, job: &str) -> Result<JobFiles> {
    let dir = host_dir.join(job);
    let path = dir.join(CLAIM_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Usage {
        message: format!(
            "no job {job} in {} ({e}): give the profile it was launched with (--profile), and its --set job.host_log_dir when it had one",
            host_dir.display()
        ),
    })?;
    let claim: Claim = serde_json::from_str(&text).map_err(|e| Error::Usage {
        message: format!("{} is not a claim bootforge can read ({e})", path.display()),
    })?;
    let mine = |doc: Option<Json>| {
        doc.filter(|d| {
            claim.instance_id.is_some() && d["instance_id"].as_str() == claim.instance_id.as_deref()
        })
    };
    Ok(JobFiles {
        status: mine(read_json(&dir.join("status.json"))),
        progress: progress(&dir, job, claim.instance_id.as_deref()),
        dir,
        claim,
    })
}

/// The job now: `files`, the instance's `state` (EC2's or the engine's),
/// at `now` (seconds since the epoch).
pub fn summarize(files: JobFiles, state: Option<String>, max_attempts: u32, now: u64) -> JobStatus {
    let c = &files.claim;
    let launched_by = c.instance_id.as_ref().map(|id| format!("launched {id}"));
    let request = c
        .requests
        .iter()
        .find(|r| r.result.is_some() && r.result == launched_by);
    let price = request.and_then(|r| r.price_per_hour);
    let final_status = files.status.as_ref().filter(|s| s["final"] != false);
    let ended_at = final_status
        .and_then(|s| s["ended_at"].as_str())
        .and_then(parse_rfc3339);
    let gone = state.as_deref() == Some("terminated");
    let until = ended_at.unwrap_or(now);
    let cost = price.map(|p| catalog::job_cost(p, until.saturating_sub(c.launched_at)));
    let running = final_status.is_none() && files.status.is_none();
    let progress = files.progress.as_ref().filter(|_| running);
    let phase = match (final_status, &files.status, progress) {
        (Some(_), _, _) => "ended",
        (None, Some(_), _) => "interrupted",
        (None, None, Some(p)) => p.phase.as_str(),
        (None, None, None) => "launched",
    };
    let quiet = progress
        .and_then(|p| p.written)
        .map(|w| now.saturating_sub(w))
        .filter(|q| *q >= QUIET_LOG && state.as_deref() == Some("running"));
    let note = if final_status.is_none() && gone {
        Some("the instance is gone without a final status: `launch` of the job reports its outcome (from the console or EC2's StateReason)"
            .to_string())
    } else {
        quiet.map(|q| {
            format!(
                "the job's log has not grown for {} min while the instance runs: a quiet pipeline, or an instance that stopped working (`logs` shows its last lines)",
                q / 60
            )
        })
    };
    let earlier_cost: Option<f64> = c.earlier.iter().map(|a| a.cost_usd).sum();
    JobStatus {
        job: c.job.clone(),
        profile: c.profile.clone(),
        job_dir: files.dir.clone(),
        run: c.run,
        attempt: c.attempt,
        max_attempts,
        instance_id: c.instance_id.clone(),
        instance_state: state,
        market: request.map(|r| {
            crate::compile::model::Market::of_request(r.spot)
                .name()
                .to_string()
        }),
        price_per_hour: price,
        launched_at: rfc3339(c.launched_at),
        phase: phase.to_string(),
        phase_seconds: progress.map(|p| now.saturating_sub(p.since)),
        log_written_at: progress.and_then(|p| p.written).map(rfc3339),
        seconds: until.saturating_sub(c.launched_at),
        note,
        cost_so_far: cost,
        run_cost_so_far: cost.zip(earlier_cost).map(|(a, b)| a + b),
        outcome: final_status
            .and_then(|s| s["outcome"].as_str())
            .map(str::to_string),
        exit_code: final_status.and_then(|s| s["exit_code"].as_i64()),
        status: files.status.clone(),
        earlier: c.earlier.clone(),
    }
}

/// Whether the run whose files are in `dir` (its `run-id`) has written its
/// final status: `logs --follow` stops there.
pub fn run_ended(dir: &Path) -> bool {
    let instance = std::fs::read_to_string(dir.join("run-id"))
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string));
    read_json(&dir.join("status.json")).is_some_and(|s| {
        s["final"] != false
            && instance.is_some()
            && s["instance_id"].as_str() == instance.as_deref()
    })
}

/// Whether the job in `dir` may still write its current run's log: it is
/// claimed, its launch did not fail, and its run has not ended.
pub fn log_may_come(dir: &Path) -> bool {
    read_json(&dir.join(CLAIM_FILE)).is_some_and(|c| c["failed"].is_null()) && !run_ended(dir)
}

/// The log of run `run` of the job in `dir` (the current one when `None`):
/// `job.log` in the job's directory when its `run-id` is that run's, else
/// in the newest of `runs/*` whose `run-id` is.
pub fn log_of(dir: &Path, run: Option<u32>) -> Result<PathBuf> {
    let run_of = |d: &Path| {
        std::fs::read_to_string(d.join("run-id"))
            .ok()
            .and_then(|t| {
                t.split_whitespace()
                    .nth(2)
                    .and_then(|r| r.parse::<u32>().ok())
            })
    };
    let current = dir.join("job.log");
    let Some(wanted) = run else {
        return if current.is_file() {
            Ok(current)
        } else {
            Err(Error::Usage {
                message: format!(
                    "no log yet in {}: the instance has not written one",
                    dir.display()
                ),
            })
        };
    };
    if run_of(dir) == Some(wanted) && current.is_file() {
        return Ok(current);
    }
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir.join("runs"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| run_of(d) == Some(wanted) && d.join("job.log").is_file())
        .filter_map(|d| {
            let at = std::fs::metadata(d.join("job.log"))
                .and_then(|m| m.modified())
                .ok()?;
            Some((at, d.join("job.log")))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| Error::Usage {
        message: format!("no log of run {wanted} in {} or its runs/", dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::claim::ClaimedRequest;

    fn files(status: Option<Json>) -> JobFiles {
        let mut claim = Claim::new("p", "j", 1, "sha", 1_000);
        claim.instance_id = Some("i-1".to_string());
        claim.requests.push(ClaimedRequest {
            client_token: "t".to_string(),
            instance_type: "g6e.xlarge".to_string(),
            subnet: "s".to_string(),
            spot: true,
            result: Some("launched i-1".to_string()),
            price_per_hour: Some(0.72),
        });
        JobFiles {
            dir: PathBuf::from("/efs/jobs/j"),
            claim,
            status,
            progress: None,
        }
    }

    #[test]
    fn a_running_attempt_costs_its_time_so_far() {
        let s = summarize(files(None), Some("running".into()), 3, 1_300);
        assert_eq!((s.phase.as_str(), s.seconds), ("launched", 300));
        assert!(s.note.is_none());
        // Five minutes at $0.72.
        assert!((s.cost_so_far.unwrap() - 0.72 * 300.0 / 3600.0).abs() < 1e-9);
        assert_eq!(s.market.as_deref(), Some("spot"));
        // Gone without a final status: said, with where to look.
        let s = summarize(files(None), Some("terminated".into()), 3, 1_300);
        assert!(s.note.unwrap().contains("without a final status"));
    }

    #[test]
    fn a_final_status_ends_the_job_and_stops_the_cost() {
        let status = serde_json::json!({"instance_id": "i-1", "outcome": "failed", "exit_code": 1,
            "final": true, "ended_at": rfc3339(4_600)});
        let s = summarize(files(Some(status)), Some("terminated".into()), 1, 9_000);
        assert_eq!(s.phase, "ended");
        assert_eq!(s.outcome.as_deref(), Some("failed"));
        assert!(
            (s.cost_so_far.unwrap() - 0.72).abs() < 1e-9,
            "an hour, not until now"
        );
        assert!(s.note.is_none());
        // An interim status (a spot notice) is not the end.
        let interim =
            serde_json::json!({"instance_id": "i-1", "outcome": "interrupted", "final": false});
        let s = summarize(files(Some(interim)), Some("running".into()), 1, 1_200);
        assert_eq!(s.phase, "interrupted");
        assert!(s.outcome.is_none() && s.status.is_some());
    }

    #[test]
    fn the_phase_comes_from_the_runners_log_lines() {
        let log = "2026-12-02T10:00:00Z bootforge[j] job j starts (run 1)\n\
            2026-12-02T10:00:01Z bootforge[j] phase mount: start\n\
            2026-12-02T10:00:09Z bootforge[j] phase mount: done in 8s\n\
            2026-12-02T10:00:09Z bootforge[j] phase deps: start\n\
            2026-12-02T10:00:40Z bootforge[j] phase deps: done in 31s\n\
            2026-12-02T10:00:40Z bootforge[j] phase run: start\n\
            2026-12-02T10:05:00Z phase fake: start (the pipeline's own line)\n\
            2026-12-02T10:05:01Z bootforge[other] phase gpu: start\n";
        let at = |t: &str| parse_rfc3339(t).unwrap();
        assert_eq!(
            progress_of(log, "j"),
            Some(("run".to_string(), at("2026-12-02T10:00:40Z")))
        );
        let ended = format!("{log}2026-12-02T11:00:00Z bootforge[j] phase run: done in 3560s\n");
        assert_eq!(
            progress_of(&ended, "j"),
            Some(("finalizing".to_string(), at("2026-12-02T11:00:00Z")))
        );
        assert_eq!(progress_of("no phase here\n", "j"), None);
    }

    #[test]
    fn a_running_runner_shows_its_phase_and_a_quiet_log_is_noted() {
        let mut f = files(None);
        f.progress = Some(Progress {
            phase: "run".to_string(),
            since: 1_100,
            written: Some(1_250),
        });
        let s = summarize(f.clone(), Some("running".into()), 1, 1_300);
        assert_eq!((s.phase.as_str(), s.phase_seconds), ("run", Some(200)));
        assert_eq!(s.log_written_at, Some(rfc3339(1_250)));
        assert!(s.note.is_none());
        let s = summarize(f.clone(), Some("running".into()), 1, 1_250 + QUIET_LOG);
        assert!(s.note.unwrap().contains("has not grown for 30 min"));
        // A final status wins over the log.
        f.status = Some(
            serde_json::json!({"instance_id": "i-1", "outcome": "succeeded",
            "exit_code": 0, "final": true, "ended_at": rfc3339(1_400)}),
        );
        let s = summarize(f, Some("terminated".into()), 1, 9_000);
        assert_eq!((s.phase.as_str(), s.phase_seconds), ("ended", None));
    }

    #[test]
    fn an_earlier_runs_log_is_found_by_its_run_id() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("run-id"), "i-3 boot 2\n").unwrap();
        std::fs::write(d.join("job.log"), "run 2\n").unwrap();
        std::fs::create_dir_all(d.join("runs/i-1")).unwrap();
        std::fs::write(d.join("runs/i-1/run-id"), "i-1 boot 1\n").unwrap();
        std::fs::write(d.join("runs/i-1/job.log"), "run 1\n").unwrap();
        assert_eq!(log_of(d, None).unwrap(), d.join("job.log"));
        assert_eq!(log_of(d, Some(2)).unwrap(), d.join("job.log"));
        assert_eq!(log_of(d, Some(1)).unwrap(), d.join("runs/i-1/job.log"));
        assert!(
            log_of(d, Some(7))
                .unwrap_err()
                .to_string()
                .contains("no log of run 7")
        );
    }
}
