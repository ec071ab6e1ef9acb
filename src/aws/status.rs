//! `status JOB` and `logs JOB`: a job as its directory tells it (the
//! launcher's claim, the runner's status, the log), with the instance's
//! state as EC2 (or the local engine) gives it. Reading and summing up are
//! here; asking EC2 is the caller's.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::aws::claim::{CLAIM_FILE, Claim, EndedAttempt};
use crate::aws::files::read_json;
use crate::aws::log::phase_lines_of;
pub use crate::aws::run_status::{
    End, Environment, Gpu, NO_STATUS, Notice, RunStatus, end_of_report, exit_code, readers_schema,
    strict_run_status_schema,
};
use crate::check::catalog;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::diagnostics::{Error, Result};

/// Why a job waits, and its place.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct QueuedAt {
    /// Its place among the queued jobs of its profile (1 is next).
    pub place: usize,
    /// When it was queued (RFC 3339).
    pub since: String,
    /// Why: the profile's `max_running`, or the account's quota.
    pub reason: String,
    /// Not tried again before then (RFC 3339), after a quota error.
    pub retry_at: Option<String>,
}

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
    /// Why the job waits, and its place, while it is queued.
    pub queued: Option<QueuedAt>,
    /// What looks wrong, when something does (a quiet log, passes of
    /// `advance` that stopped coming…).
    pub note: Option<String>,
    /// What the attempt has cost so far (runtime × price), and with the
    /// run's earlier attempts.
    pub cost_so_far: Option<f64>,
    pub run_cost_so_far: Option<f64>,
    /// The job's outcome once it has ended, as `launch` reports it
    /// (`terminated` for a job ended on purpose), and the pipeline's exit
    /// code as its status gives it.
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    /// This attempt's status.json, interim (a spot notice) or final.
    #[schemars(with = "Option<RunStatus>")]
    pub status: Option<Json>,
    /// The run's earlier attempts.
    pub earlier: Vec<EndedAttempt>,
}

/// What the job's directory holds.
#[derive(Debug, Clone)]
pub struct JobFiles {
    pub dir: PathBuf,
    pub claim: Claim,
    pub status: Option<Json>,
    /// The claim's instance's progress, from its `job.log` on the EFS.
    pub progress: Option<Progress>,
    /// Its place among its profile's queued jobs, as the index says.
    pub place: Option<usize>,
    /// That passes of `advance` stopped coming, when they did.
    pub late: Option<String>,
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
    let (phase, since) = progress_of(&phase_lines_of(&path)?, job)?;
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
    let claim = Claim::parse(&text).map_err(|e| Error::Usage {
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
        place: None,
        late: None,
    })
}

/// The job now: `files`, the instance's `state` (EC2's or the engine's),
/// at `now` (seconds since the epoch). A run whose end is recorded (by the
/// waiter or the pass that found it) is that end: the outcome `launch`
/// reports, and the cost of every attempt up to its end.
pub fn summarize(files: JobFiles, state: Option<String>, max_attempts: u32, now: u64) -> JobStatus {
    let c = &files.claim;
    let request = c.instance_id.as_deref().and_then(|id| c.request_of(id));
    let price = request.and_then(|r| r.price_per_hour);
    let recorded = c.end.as_ref().and_then(end_of_report);
    let final_status = files.status.as_ref().filter(|s| s["final"] != false);
    let gone = state.as_deref() == Some("terminated");
    let running = final_status.is_none() && files.status.is_none() && recorded.is_none();
    let progress = files.progress.as_ref().filter(|_| running);
    // An attempt costs until it ended: its status says when; gone without
    // one, when it was first seen gone, else its log's last write.
    let ended_at = recorded
        .as_ref()
        .and_then(|r| r.attempts.last().map(|a| a.ended_at))
        .or_else(|| {
            final_status
                .and_then(|s| s["ended_at"].as_str())
                .and_then(parse_rfc3339)
        })
        .or_else(|| {
            gone.then(|| {
                c.gone_since
                    .or_else(|| files.progress.as_ref().and_then(|p| p.written))
            })
            .flatten()
        });
    let until = ended_at.unwrap_or(now).max(c.launched_at);
    let cost = match (&c.queued, recorded.as_ref().and_then(|r| r.attempts.last())) {
        (Some(_), _) => None,
        (None, Some(last)) => last.cost_usd,
        (None, None) => price.map(|p| catalog::job_cost(p, until - c.launched_at)),
    };
    let phase = match (&c.queued, &recorded, final_status, &files.status, progress) {
        (Some(_), ..) => "queued",
        (None, Some(_), ..) | (None, None, Some(_), ..) => "ended",
        (None, None, None, Some(_), _) => "interrupted",
        (None, None, None, None, Some(p)) => p.phase.as_str(),
        (None, None, None, None, None) => "launched",
    };
    let quiet = progress
        .and_then(|p| p.written)
        .map(|w| now.saturating_sub(w))
        .filter(|q| *q >= QUIET_LOG && state.as_deref() == Some("running"));
    let mut notes: Vec<String> = Vec::new();
    if recorded.is_none() && final_status.is_none() && gone {
        notes.push("the instance is gone without a final status: `advance` (or `launch`) of the job reports its outcome (from the console or EC2's StateReason)".to_string());
    }
    if let Some(q) = quiet {
        notes.push(format!(
            "the job's log has not grown for {} min while the instance runs: a quiet pipeline, or an instance that stopped working (`logs` shows its last lines)",
            q / 60
        ));
    }
    if phase != "ended" {
        notes.extend(files.late.clone());
    }
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
        seconds: match &c.queued {
            Some(q) => now.saturating_sub(q.since),
            None => until - c.launched_at,
        },
        queued: c.queued.as_ref().map(|q| QueuedAt {
            place: files.place.unwrap_or(1),
            since: rfc3339(q.since),
            reason: q.reason.clone(),
            retry_at: q.retry_at.map(rfc3339),
        }),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        cost_so_far: cost,
        run_cost_so_far: match &recorded {
            Some(r) => r.cost_usd,
            None => cost.zip(earlier_cost).map(|(a, b)| a + b),
        },
        outcome: recorded.as_ref().map(|r| r.outcome.clone()).or_else(|| {
            let outcome = final_status.and_then(|s| s["outcome"].as_str())?;
            // Ended on purpose, as `launch --wait` reports it.
            let on_purpose =
                c.ended_on_purpose.is_some() && matches!(outcome, "interrupted" | "no_status");
            Some(if on_purpose { "terminated" } else { outcome }.to_string())
        }),
        // The pipeline's, as its status says (`launch`'s own exit code is
        // the outcome's).
        exit_code: final_status
            .or_else(|| c.end.as_ref().map(|e| &e["wait"]["status"]))
            .and_then(|s| s["exit_code"].as_i64()),
        status: files.status.clone(),
        earlier: c.earlier.clone(),
    }
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
            place: None,
            late: None,
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
    fn a_job_ended_on_purpose_is_terminated_as_launch_reports_it() {
        let mut f = files(Some(serde_json::json!({"instance_id": "i-1",
            "outcome": "interrupted", "exit_code": 143, "final": true,
            "ended_at": rfc3339(1_400)})));
        assert_eq!(
            summarize(f.clone(), None, 1, 2_000).outcome.as_deref(),
            Some("interrupted")
        );
        f.claim.ended_on_purpose = Some("bootforge terminate".to_string());
        let s = summarize(f, None, 1, 2_000);
        assert_eq!(
            (s.outcome.as_deref(), s.exit_code),
            (Some("terminated"), Some(143))
        );
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
}
