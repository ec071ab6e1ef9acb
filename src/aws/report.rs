//! What a job's run came to: the one report `launch` prints (and `advance`
//! for every job that ended), what follows an attempt that ended under the
//! retry policy, the end recorded in the claim once (whoever finds it
//! first, a waiter or a pass), and its acknowledgement once delivered.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::aws::claim::{Acknowledged, CLAIM_FILE, Claim, Claims, holder};
use crate::aws::index::{Entry, Index, end_of_report};
use crate::aws::operate::Launched;
use crate::aws::retry::{self, Attempts, Verdict};
pub use crate::aws::status::QueuedAt;
use crate::aws::wait::Finished;
use crate::clock::{now, rfc3339};
use crate::compile::model::{Market, Retry};
use crate::diagnostics::{Error, Result};
use crate::progress::Event;

/// What `launch` did, as the command reports it (`--json` prints it); the
/// same report `advance` prints for a job that ended.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    /// True when this launch started the instance.
    pub launched: bool,
    pub run: u32,
    /// The run's attempt this report is about (the last one).
    pub attempt: u32,
    /// The retry policy's attempts in all (1 without one).
    pub max_attempts: u32,
    /// The attempt's instance; absent while the job is queued.
    pub instance_id: Option<String>,
    /// The instance's state, or `queued`.
    pub state: String,
    pub instance_type: String,
    /// `spot` or `on-demand` (the market of the request that launched it).
    pub market: Option<String>,
    pub subnet: Option<String>,
    pub private_ip: Option<String>,
    pub price_per_hour: Option<f64>,
    pub cost_at_timeout: Option<f64>,
    pub deadline: Option<String>,
    pub profile: String,
    pub job: String,
    pub payload_sha256: String,
    pub client_token: Option<String>,
    pub no_capacity: Vec<String>,
    /// The job's claim file.
    pub claim: PathBuf,
    pub claim_shared: bool,
    /// Why the job waits, and its place, while it is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<QueuedAt>,
    /// How the run ended: with `--wait`, or when it had already ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Finished>,
    /// The run's attempts that have ended, each with its market, price and
    /// cost, and their cost summed.
    #[serde(flatten)]
    pub history: Attempts,
    /// Why no further attempt was started, when the profile has a retry
    /// policy and the job has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// Whether the run had ended before this launch.
    #[serde(skip)]
    pub found_finished: bool,
}

impl Report {
    /// The process's exit code: the outcome's (see
    /// [`crate::aws::status::exit_code`]) when the run ended, else 0.
    pub fn exit_code(&self) -> i32 {
        self.wait.as_ref().map_or(0, |f| f.exit_code)
    }
}

/// The retry policy's attempts in all (1 without one).
pub fn max_attempts(policy: Option<&Retry>) -> u32 {
    policy.map_or(1, |r| r.attempts)
}

/// The report of `launched`, an attempt of `claim`'s run, with how its run
/// ended when it did (found ended, or waited for).
pub fn report(
    claim: &Claim,
    max_attempts: u32,
    launched: Launched,
    wait: Option<Finished>,
    claims: &Claims,
    history: Attempts,
    retry: Option<String>,
) -> Report {
    let i = launched.instance;
    let request = launched.request;
    Report {
        launched: launched.launched,
        run: launched.run,
        attempt: launched.attempt,
        max_attempts,
        instance_id: Some(i.id),
        state: i.state,
        instance_type: i.instance_type,
        market: request
            .as_ref()
            .map(|r| Market::of_request(r.spot).name().to_string()),
        subnet: i.subnet,
        private_ip: i.private_ip,
        price_per_hour: request
            .as_ref()
            .and_then(|r| r.price_per_hour)
            .or(launched.price_per_hour),
        cost_at_timeout: launched.cost_at_timeout,
        deadline: i.deadline,
        profile: claim.profile.clone(),
        job: claim.job.clone(),
        payload_sha256: claim.payload_sha256.clone(),
        client_token: request.map(|r| r.client_token),
        no_capacity: launched.no_capacity,
        claim: claims.dir().join(CLAIM_FILE),
        claim_shared: launched.claim_shared,
        queued: None,
        wait,
        history,
        retry,
        found_finished: false,
    }
}

/// The report of `claim`'s run while it has no instance (state `none`).
pub fn without_instance(
    claim: &Claim,
    max_attempts: u32,
    instance_type: &str,
    claims: &Claims,
) -> Report {
    Report {
        launched: false,
        run: claim.run,
        attempt: claim.attempt,
        max_attempts,
        instance_id: None,
        state: "none".to_string(),
        instance_type: instance_type.to_string(),
        market: None,
        subnet: None,
        private_ip: None,
        price_per_hour: None,
        cost_at_timeout: None,
        deadline: None,
        profile: claim.profile.clone(),
        job: claim.job.clone(),
        payload_sha256: claim.payload_sha256.clone(),
        client_token: None,
        no_capacity: Vec::new(),
        claim: claims.dir().join(CLAIM_FILE),
        claim_shared: claims.shared,
        queued: None,
        wait: None,
        history: retry::attempts(claim, None),
        retry: None,
        found_finished: false,
    }
}

/// The report of a job that waits for its turn, at `place`.
pub fn queued(
    claim: &Claim,
    max_attempts: u32,
    instance_type: &str,
    place: usize,
    claims: &Claims,
) -> Report {
    let q = claim.queued.as_ref();
    let mut report = without_instance(claim, max_attempts, instance_type, claims);
    report.state = "queued".to_string();
    report.queued = Some(QueuedAt {
        place,
        since: rfc3339(q.map_or(claim.launched_at, |q| q.since)),
        reason: q.map(|q| q.reason.clone()).unwrap_or_default(),
        retry_at: q.and_then(|q| q.retry_at).map(rfc3339),
    });
    report
}

/// The report a claim recorded at its run's end, as a later launch or pass
/// gives it again.
pub fn recorded(claim: &Claim) -> Result<Report> {
    let end = claim.end.clone().unwrap_or_default();
    let mut report: Report = serde_json::from_value(end).map_err(|e| Error::Environment {
        message: format!(
            "the end recorded in the claim of job {} cannot be read ({e})",
            claim.job
        ),
        help: Some("`launch --rerun` starts a new run of the job".to_string()),
    })?;
    report.launched = false;
    report.found_finished = true;
    Ok(report)
}

/// Records `report`, the end of its run, in the job's claim and index,
/// unless the run's end is recorded already (another waiter or pass found
/// it first): the report as recorded. `delivered`: whether whoever made it
/// hands it to its caller now (`launch --wait`), which acknowledges it.
pub fn record_end(claims: &Claims, report: Report, delivered: bool) -> Result<Report> {
    let value = serde_json::to_value(&report).map_err(|e| Error::Environment {
        message: format!("the report of job {} cannot be kept: {e}", report.job),
        help: None,
    })?;
    let kept = claims.update(|c| match c {
        Some(mut c) if c.run == report.run => {
            if c.end.is_none() {
                c.end = Some(value.clone());
            }
            if delivered && !c.reported() {
                c.acknowledged = Some(acknowledgement(c.run));
            }
            (Some(c.clone()), Some(c))
        }
        _ => (None, None),
    })?;
    let Some(claim) = kept else {
        return Ok(report);
    };
    let entry = Entry::of(&claim, claim.end.as_ref().and_then(end_of_report));
    Index::of(claims.jobs_dir()).update(|live| {
        live.put(entry);
    })?;
    let mut kept = recorded(&claim)?;
    kept.launched = report.launched;
    kept.found_finished = report.found_finished;
    Ok(kept)
}

fn acknowledgement(run: u32) -> Acknowledged {
    Acknowledged {
        run,
        at: now(),
        by: holder(),
    }
}

/// `advance --ack JOB:RUN`: the end of run `run` was delivered. False when
/// the claim has no recorded end of that run (nothing to acknowledge).
pub fn acknowledge(claims: &Claims, run: u32) -> Result<bool> {
    let done = claims.update(|c| match c {
        Some(mut c) if c.run == run && c.ended() => {
            if !c.reported() {
                c.acknowledged = Some(acknowledgement(run));
            }
            (Some(c.clone()), Some(c))
        }
        _ => (None, None),
    })?;
    let Some(claim) = done else {
        return Ok(false);
    };
    let entry = Entry::of(&claim, claim.end.as_ref().and_then(end_of_report));
    Index::of(claims.jobs_dir()).update(|live| {
        live.put(entry);
    })?;
    Ok(true)
}

/// What a launch (or a pass) does once it knows how the current attempt
/// stands.
pub enum Step {
    /// The job has ended, or goes on without this launch waiting.
    Report(Box<Report>),
    /// The next attempt of the run: claim it, launch it, follow it.
    Again,
}

/// After `launched` (and, when it has ended, `finished`): the report, or
/// the next attempt under the retry policy `policy`. An end is recorded in
/// the claim (`delivered`: and acknowledged).
pub fn next_step(
    policy: Option<&Retry>,
    claims: &Claims,
    launched: Launched,
    finished: Option<Finished>,
    delivered: bool,
    on: &mut dyn FnMut(Event),
) -> Result<Step> {
    let claim = claims.read()?.ok_or_else(|| Error::Environment {
        message: format!("the claim in {} is gone", claims.dir().display()),
        help: Some("another host removed the job's directory".to_string()),
    })?;
    let found_finished = launched.finished.is_some();
    let current = (claim.run == launched.run
        && claim.instance_id.as_deref() == Some(launched.instance.id.as_str()))
    .then_some(&claim);
    let (Some(mut finished), Some(current)) = (finished, current) else {
        let history = retry::attempts(&claim, None);
        return Ok(Step::Report(Box::new(report(
            &claim,
            max_attempts(policy),
            launched,
            None,
            claims,
            history,
            None,
        ))));
    };
    let now = now();
    match retry::after(policy, current, &launched.instance, &mut finished, now) {
        Verdict::Next(ended) => {
            let (attempt, outcome) = (ended.attempt, ended.outcome.clone());
            if retry::advance(claims, current.run, ended, now)? {
                on(Event::Progress(format!(
                    "job {} run {}: attempt {attempt} ended `{outcome}` on {}; starting attempt {} of {}",
                    current.job,
                    current.run,
                    launched.instance.id,
                    attempt + 1,
                    max_attempts(policy)
                )));
            }
            Ok(Step::Again)
        }
        Verdict::End(why) => {
            if let Some(why) = &why {
                on(Event::Progress(format!("job {}: {why}", current.job)));
            }
            let last = retry::ended(current, &launched.instance, &finished, now);
            let history = retry::attempts(current, Some(last));
            let mut ended = report(
                current,
                max_attempts(policy),
                launched,
                Some(finished),
                claims,
                history,
                why,
            );
            ended.found_finished = found_finished;
            Ok(Step::Report(Box::new(record_end(
                claims, ended, delivered,
            )?)))
        }
    }
}

/// `advance --ack JOB:RUN`: each job's run whose end was delivered.
pub fn acknowledge_all(jobs_dir: &Path, acks: &[(String, u32)]) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    for (job, run) in acks {
        let claims = Claims::in_folder(jobs_dir, job);
        if !acknowledge(&claims, *run)? {
            unknown.push(format!("{job}:{run}"));
        }
    }
    Ok(unknown)
}

/// `JOB:RUN`, as `--ack` takes it.
pub fn parse_ack(text: &str) -> Result<(String, u32)> {
    let usage = || Error::Usage {
        message: format!(
            "--ack {text}: expected JOB:RUN, the job's id and the run whose end was delivered (`advance --json` gives both)"
        ),
    };
    let (job, run) = text.rsplit_once(':').ok_or_else(usage)?;
    let run: u32 = run.parse().map_err(|_| usage())?;
    if job.is_empty() || job.contains('/') || job.starts_with('.') {
        return Err(usage());
    }
    Ok((job.to_string(), run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_name_a_job_and_a_run() {
        assert_eq!(parse_ack("job-7:2").unwrap(), ("job-7".to_string(), 2));
        assert_eq!(parse_ack("a:b:3").unwrap(), ("a:b".to_string(), 3));
        for bad in ["job-7", "job-7:", ":2", "job:x", "../x:1", ".bootforge:1"] {
            assert!(parse_ack(bad).is_err(), "{bad}");
        }
    }
}
