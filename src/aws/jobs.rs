//! `jobs`: every job of a jobs folder at a glance, newest first, with what
//! it came to and what it cost, and totals over a window of time (jobs by
//! outcome, GPU hours, money spent, spot's saving against on demand).
//!
//! Reading stays bounded as history grows: the index (`index`) gives the
//! jobs not yet reported and, one file a month, the reported ones with their
//! end; only the live jobs' claims, statuses and logs are read besides. A
//! folder from before the index is read whole once, to build it.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::aws::claim::EndedAttempt;
use crate::aws::index::{End, Entry, Index, State};
use crate::aws::status::{self, JobStatus, QueuedAt};
use crate::check::catalog;
use crate::clock::rfc3339;
use crate::compile::model::Market;
use crate::diagnostics::Result;

/// Which jobs `jobs` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Queued or running.
    Live,
    Ended,
    All,
}

/// One job in the list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct JobRow {
    pub job: String,
    pub profile: String,
    pub run: u32,
    /// `queued`, `live` or `ended`.
    pub state: String,
    /// While it is live: the phase now (`launched`, `deps`, `gpu`, `run`,
    /// `finalizing`, `interrupted`) or `queued`.
    pub phase: Option<String>,
    /// Once it has ended: the outcome `launch --wait` reports (`terminated`
    /// for a job ended on purpose), and the pipeline's exit code.
    pub outcome: Option<String>,
    pub exit_code: Option<i64>,
    /// When its run started (its first attempt's launch, or its queueing),
    /// and ended, RFC 3339.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// From its start to its end (or to now), seconds.
    pub seconds: u64,
    /// The current (or last) attempt's instance, its type and market.
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub market: Option<String>,
    /// Every attempt of the run, each with its market, price and cost (the
    /// current one as it stands).
    pub attempts: Vec<EndedAttempt>,
    /// What the run cost, summed over its attempts (so far, while it runs);
    /// absent when an attempt has no price (a local rehearsal).
    pub cost_usd: Option<f64>,
    /// What the spot attempts saved against the on-demand price.
    pub spot_saving_usd: Option<f64>,
    /// Why it ended so, or what looks wrong.
    pub message: Option<String>,
    /// While it is queued: its place and why.
    pub queued: Option<QueuedAt>,
}

/// Totals over every job of the window, not only the rows shown.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Totals {
    pub jobs: usize,
    /// Jobs by outcome, and `live` and `queued` for those that have none
    /// yet.
    pub by_outcome: BTreeMap<String, usize>,
    /// Hours of GPU instances, summed over every attempt.
    pub gpu_hours: f64,
    /// Money spent, and what spot saved against on demand.
    pub cost_usd: f64,
    pub spot_saving_usd: f64,
    /// Jobs whose cost is not known (an attempt without a price): not in
    /// `cost_usd`.
    pub unpriced: usize,
}

/// What `jobs` prints (`--json`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct JobList {
    /// The window's start (RFC 3339): live jobs, and those that ended since.
    pub since: String,
    /// The rows shown, newest first (`--limit`).
    pub rows: Vec<JobRow>,
    /// How many jobs the window holds (the totals' jobs).
    pub matched: usize,
    pub totals: Totals,
    /// That nothing has followed the jobs lately, when so.
    pub note: Option<String>,
}

/// The jobs of `jobs_dir` that are live or ended since `since` (seconds
/// since the epoch), newest first, `limit` of them shown; totals over all.
pub fn list(
    jobs_dir: &Path,
    which: Which,
    since: u64,
    limit: Option<usize>,
    now: u64,
) -> Result<JobList> {
    let index = Index::of(jobs_dir);
    let live = index.live()?;
    let mut rows = Vec::new();
    for entry in &live.jobs {
        let row = match entry.state {
            State::Queued | State::Live => {
                live_row(jobs_dir, entry, live.position(&entry.job), now)
            }
            State::Ended | State::Reported => entry.end.as_ref().map(|e| ended_row(entry, e)),
        };
        rows.extend(row);
    }
    for entry in index.reported_since(since, now)? {
        if let Some(e) = &entry.end {
            rows.push(ended_row(&entry, e));
        }
    }
    rows.retain(|r| match (which, r.state.as_str()) {
        (Which::All, _) => true,
        (Which::Live, s) => s != "ended",
        (Which::Ended, s) => s == "ended",
    });
    rows.retain(|r| {
        r.state != "ended"
            || r.ended_at
                .as_deref()
                .and_then(crate::clock::parse_rfc3339)
                .is_some_and(|t| t >= since)
    });
    rows.sort_by(|a, b| (&b.started_at, &b.job).cmp(&(&a.started_at, &a.job)));
    let totals = totals(&rows);
    let matched = rows.len();
    rows.truncate(limit.unwrap_or(usize::MAX));
    let note = if live.jobs.iter().any(|e| e.state == State::Live) {
        index.last_pass().and_then(|p| p.late(now))
    } else {
        None
    };
    Ok(JobList {
        since: rfc3339(since),
        rows,
        matched,
        totals,
        note,
    })
}

/// The row of a live or queued job: its claim, status and log read now.
fn live_row(jobs_dir: &Path, entry: &Entry, place: Option<usize>, now: u64) -> Option<JobRow> {
    let mut files = status::read(jobs_dir, &entry.job).ok()?;
    files.place = place;
    let max_attempts = files.claim.retry.as_ref().map_or(1, |r| r.attempts);
    let claim = files.claim.clone();
    let s = status::summarize(files, None, max_attempts, now);
    let started = claim
        .earlier
        .first()
        .map(|a| a.launched_at)
        .or_else(|| claim.queued.as_ref().map(|q| q.since))
        .unwrap_or(claim.launched_at);
    let current = current_attempt(&claim, &s, now);
    let attempts: Vec<EndedAttempt> = claim.earlier.iter().cloned().chain(current).collect();
    let ended = s.phase == "ended";
    Some(JobRow {
        job: s.job.clone(),
        profile: s.profile.clone(),
        run: s.run,
        state: match (&s.queued, ended) {
            (Some(_), _) => "queued",
            (None, true) => "ended",
            (None, false) => "live",
        }
        .to_string(),
        phase: (!ended).then(|| s.phase.clone()),
        outcome: s.outcome.clone(),
        exit_code: s.exit_code,
        started_at: rfc3339(started),
        ended_at: ended.then(|| rfc3339(claim.launched_at + s.seconds)),
        seconds: (claim.launched_at + s.seconds).saturating_sub(started),
        instance_id: s.instance_id.clone(),
        instance_type: attempts.last().map(|a| a.instance_type.clone()),
        market: s.market.clone(),
        cost_usd: s.run_cost_so_far,
        spot_saving_usd: saving(&attempts),
        message: s
            .status
            .as_ref()
            .and_then(|st| st["message"].as_str())
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or(s.note.clone()),
        queued: s.queued.clone(),
        attempts,
    })
}

/// The current attempt of a live job as it stands, priced so far.
fn current_attempt(
    claim: &crate::aws::claim::Claim,
    s: &JobStatus,
    now: u64,
) -> Option<EndedAttempt> {
    let id = claim.instance_id.clone()?;
    let request = claim.request_of(&id);
    Some(EndedAttempt {
        attempt: claim.attempt,
        instance_id: id,
        instance_type: request.map(|r| r.instance_type.clone()).unwrap_or_default(),
        market: request
            .map_or("local", |r| Market::of_request(r.spot).name())
            .to_string(),
        price_per_hour: s.price_per_hour,
        launched_at: claim.launched_at,
        ended_at: (claim.launched_at + s.seconds).min(now),
        outcome: s.outcome.clone().unwrap_or_else(|| s.phase.clone()),
        state_reason: None,
        cost_usd: s.cost_so_far,
    })
}

/// What the spot attempts saved against the on-demand price of their type.
fn saving(attempts: &[EndedAttempt]) -> Option<f64> {
    let spot: Vec<&EndedAttempt> = attempts.iter().filter(|a| a.market == "spot").collect();
    if spot.is_empty() {
        return Some(0.0).filter(|_| attempts.iter().all(|a| a.cost_usd.is_some()));
    }
    spot.iter()
        .map(|a| {
            let hours = a.ended_at.saturating_sub(a.launched_at);
            let on_demand = catalog::lookup(&a.instance_type)?.price_per_hour;
            Some(catalog::job_cost(on_demand, hours) - a.cost_usd?)
        })
        .sum()
}

/// The row of a job that has ended, from its index entry.
fn ended_row(entry: &Entry, end: &End) -> JobRow {
    let last = end.attempts.last();
    let started = end.attempts.first().map_or(entry.since, |a| a.launched_at);
    JobRow {
        job: entry.job.clone(),
        profile: entry.profile.clone(),
        run: entry.run,
        state: "ended".to_string(),
        phase: None,
        outcome: Some(end.outcome.clone()),
        exit_code: end.status_exit_code,
        started_at: rfc3339(started),
        ended_at: Some(rfc3339(end.ended_at.max(started))),
        seconds: end.ended_at.saturating_sub(started),
        instance_id: last
            .map(|a| a.instance_id.clone())
            .or(entry.instance_id.clone()),
        instance_type: last.map(|a| a.instance_type.clone()),
        market: last.map(|a| a.market.clone()),
        cost_usd: end.cost_usd,
        spot_saving_usd: saving(&end.attempts),
        message: end.message.clone(),
        queued: None,
        attempts: end.attempts.clone(),
    }
}

/// The totals of `rows`.
fn totals(rows: &[JobRow]) -> Totals {
    let mut t = Totals {
        jobs: rows.len(),
        ..Totals::default()
    };
    for r in rows {
        let key = r.outcome.clone().unwrap_or_else(|| r.state.clone());
        *t.by_outcome.entry(key).or_insert(0) += 1;
        t.gpu_hours += r
            .attempts
            .iter()
            .map(|a| a.ended_at.saturating_sub(a.launched_at) as f64 / 3600.0)
            .sum::<f64>();
        match r.cost_usd {
            Some(c) => t.cost_usd += c,
            None if !r.attempts.is_empty() => t.unpriced += 1,
            None => {}
        }
        t.spot_saving_usd += r.spot_saving_usd.unwrap_or(0.0);
    }
    t
}

/// `7d`, `36h`, `90m`, or `all`: a window's length in seconds.
pub fn window(text: &str) -> Result<u64> {
    if text == "all" {
        return Ok(u64::MAX);
    }
    crate::compile::duration::parse_seconds(text).map_err(|why| crate::diagnostics::Error::Usage {
        message: format!("--since {text}: {why} (for example 7d, 36h, 90m, or all)"),
    })
}
