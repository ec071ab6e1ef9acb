//! The index of a jobs folder (a profile's `host_log_dir`): which jobs are
//! queued, live or ended and not yet reported, and what every reported job
//! came to. A pass of `advance` reads the live jobs' claims, never all of
//! history; `jobs` reads the index and the claims of the live jobs only.
//!
//! It lives in `.bootforge/` beside the job directories (a job id starts
//! with a letter or digit, so no job is called that): `live.json`, the
//! jobs not yet reported, rewritten whole under `lock` and renamed into
//! place; `ended-YYYY-MM.json`, the reported jobs by the month they ended,
//! each written once per acknowledgement; `advance.json`, the last pass.
//! The claims stay the truth: the index is what they said when it was
//! written, and a pass puts it right from them. A folder from before the
//! index is read once, whole, to build it (see [`Index::update`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::aws::claim::{CLAIM_FILE, Claim, EndedAttempt};
use crate::aws::files::{Lock, replace};
pub use crate::aws::status::{End, end_of_report};
use crate::check::catalog;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::diagnostics::{Error, Result};

/// The index's folder in a jobs folder.
pub const INDEX_DIR: &str = ".bootforge";
const LIVE_FILE: &str = "live.json";
const LOCK_FILE: &str = "lock";
const LAST_PASS_FILE: &str = "advance.json";
/// The `schema_version` of the index's files.
pub const INDEX_SCHEMA: u32 = 1;

/// Where a job stands, as the index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its turn (`job.max_running`, or the account's quota).
    Queued,
    /// Launched: an attempt runs, starts, or is about to be retried.
    Live,
    /// Ended, its end not yet delivered.
    Ended,
    /// Ended and delivered (`advance --ack`); kept by month.
    Reported,
}

/// One run of a job, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    pub job: String,
    pub profile: String,
    pub run: u32,
    pub attempt: u32,
    pub state: State,
    /// Seconds since the epoch: when the run was claimed (queued jobs start
    /// in this order).
    pub since: u64,
    /// The current attempt's instance, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// How it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<End>,
}

impl Entry {
    /// The entry a claim makes: its run, where it stands, and its end.
    pub fn of(claim: &Claim, end: Option<End>) -> Entry {
        let state = match (&end, &claim.queued) {
            (Some(_), _) if claim.reported() => State::Reported,
            (Some(_), _) => State::Ended,
            (None, Some(_)) => State::Queued,
            (None, None) => State::Live,
        };
        Entry {
            job: claim.job.clone(),
            profile: claim.profile.clone(),
            run: claim.run,
            attempt: claim.attempt,
            state,
            since: claim
                .queued
                .as_ref()
                .map(|q| q.since)
                .or_else(|| claim.earlier.first().map(|a| a.launched_at))
                .unwrap_or(claim.launched_at),
            instance_id: claim.instance_id.clone(),
            end,
        }
    }
}

/// The jobs not yet reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    #[serde(default)]
    pub schema_version: u32,
    pub jobs: Vec<Entry>,
    /// Fields a later bootforge wrote: kept as they are.
    #[serde(flatten)]
    pub unknown: serde_json::Map<String, Json>,
}

impl Live {
    /// Puts `entry` in place of the one of its job, and returns that one.
    /// A later run replaces an earlier one, which is reported as it stood;
    /// an earlier run never replaces a later one.
    pub fn put(&mut self, entry: Entry) -> Option<Entry> {
        let at = self
            .jobs
            .iter()
            .position(|e| e.job == entry.job && e.state != State::Reported);
        match at {
            Some(at) if self.jobs[at].run > entry.run => None,
            Some(at) if self.jobs[at].run < entry.run => {
                let mut old = std::mem::replace(&mut self.jobs[at], entry);
                let replaced = old.clone();
                old.state = State::Reported;
                self.jobs.push(old);
                Some(replaced)
            }
            Some(at) => Some(std::mem::replace(&mut self.jobs[at], entry)),
            None => {
                self.jobs.push(entry);
                None
            }
        }
    }

    /// The entry of `job` (its latest run).
    pub fn get(&self, job: &str) -> Option<&Entry> {
        self.jobs
            .iter()
            .filter(|e| e.job == job)
            .max_by_key(|e| e.run)
    }

    /// How many jobs of `profile` hold an instance, or are about to.
    pub fn running(&self, profile: &str) -> usize {
        self.jobs
            .iter()
            .filter(|e| e.profile == profile && e.state == State::Live)
            .count()
    }

    /// The queued jobs of every profile, in the order they came.
    pub fn queued(&self) -> Vec<&Entry> {
        let mut queued: Vec<&Entry> = self
            .jobs
            .iter()
            .filter(|e| e.state == State::Queued)
            .collect();
        queued.sort_by(|a, b| (a.since, &a.job).cmp(&(b.since, &b.job)));
        queued
    }

    /// The place of `job` among the queued jobs of its profile (1 is next).
    pub fn position(&self, job: &str) -> Option<usize> {
        let entry = self.get(job).filter(|e| e.state == State::Queued)?;
        self.queued()
            .iter()
            .filter(|e| e.profile == entry.profile)
            .position(|e| e.job == job)
            .map(|p| p + 1)
    }
}

/// A file of reported jobs, by the month they ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Month {
    #[serde(default)]
    schema_version: u32,
    jobs: Vec<Entry>,
    #[serde(flatten)]
    unknown: serde_json::Map<String, Json>,
}

/// The last pass of `advance` over a jobs folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LastPass {
    /// When it ran (RFC 3339) and, in seconds since the epoch.
    pub at: String,
    pub at_epoch: u64,
    /// How often passes are meant to come, seconds (`--every`), when said.
    pub every: Option<u64>,
    /// Who ran it (`host:pid`).
    pub by: String,
    /// The jobs it followed, the jobs it found ended, and how long it took.
    pub followed: usize,
    pub ended: usize,
    pub took_ms: u64,
}

/// Passes this many intervals late mean nothing follows the jobs.
pub const LATE_PASSES: u64 = 3;

impl LastPass {
    /// What to tell, when passes have stopped coming: none for
    /// [`LATE_PASSES`] of its intervals.
    pub fn late(&self, now: u64) -> Option<String> {
        let every = self.every?;
        let since = now.saturating_sub(self.at_epoch);
        (since > LATE_PASSES * every.max(1)).then(|| {
            format!(
                "nothing has followed the jobs for {since}s: the last pass of `bootforge advance` was at {} (by {}), and passes were meant to come every {every}s; is Celery beat (or `advance --watch`) running?",
                self.at, self.by
            )
        })
    }
}

/// The index of the jobs folder `jobs_dir`.
#[derive(Debug, Clone)]
pub struct Index {
    jobs_dir: PathBuf,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Environment {
                message: format!(
                    "{} is not an index bootforge can read ({e})",
                    path.display()
                ),
                help: Some(
                    "move the file aside: the index is built again from the jobs' claims"
                        .to_string(),
                ),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read", e)),
    }
}

fn to_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("the index serializes to JSON")
}

/// `YYYY-MM` of a time (seconds since the epoch), UTC.
fn month_of(at: u64) -> String {
    rfc3339(at)[..7].to_string()
}

impl Index {
    pub fn of(jobs_dir: &Path) -> Index {
        Index {
            jobs_dir: jobs_dir.to_path_buf(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.jobs_dir.join(INDEX_DIR)
    }

    /// The jobs not yet reported, as last written; built from the claims
    /// when the folder has no index yet (and written, when it can be).
    pub fn live(&self) -> Result<Live> {
        match read_json::<Live>(&self.dir().join(LIVE_FILE))? {
            Some(live) => Ok(live),
            None => match self.update(|_| ()) {
                Ok(()) => Ok(read_json(&self.dir().join(LIVE_FILE))?.unwrap_or_default()),
                // A folder this host may only read: built, not kept.
                Err(_) => Ok(self.build()?.0),
            },
        }
    }

    /// Changes the index under its lock: `change` sees the jobs not yet
    /// reported and says what they become. Entries that become reported
    /// move to their month's file. A folder without an index gets one,
    /// built from its claims.
    pub fn update<T>(&self, change: impl FnOnce(&mut Live) -> T) -> Result<T> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
        let _lock = Lock::take(&dir.join(LOCK_FILE), "the index of jobs")?;
        let path = dir.join(LIVE_FILE);
        let (mut live, mut reported) = match read_json::<Live>(&path)? {
            Some(live) => (live, Vec::new()),
            None => self.build()?,
        };
        let before = live.clone();
        let out = change(&mut live);
        reported.extend(
            live.jobs
                .iter()
                .filter(|e| e.state == State::Reported)
                .cloned(),
        );
        live.jobs.retain(|e| e.state != State::Reported);
        live.jobs
            .sort_by(|a, b| (a.since, &a.job).cmp(&(b.since, &b.job)));
        live.schema_version = live.schema_version.max(INDEX_SCHEMA);
        self.archive(reported)?;
        if live != before || !path.exists() {
            replace(&path, &to_text(&live))?;
        }
        Ok(out)
    }

    /// Adds reported entries to their months' files.
    fn archive(&self, entries: Vec<Entry>) -> Result<()> {
        let mut by_month: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for e in entries {
            let at = e.end.as_ref().map_or(e.since, |end| end.ended_at);
            by_month.entry(month_of(at)).or_default().push(e);
        }
        for (month, entries) in by_month {
            let path = self.dir().join(format!("ended-{month}.json"));
            let mut file: Month = read_json(&path)?.unwrap_or_default();
            for e in entries {
                file.jobs
                    .retain(|old| (&old.job, old.run) != (&e.job, e.run));
                file.jobs.push(e);
            }
            file.schema_version = file.schema_version.max(INDEX_SCHEMA);
            replace(&path, &to_text(&file))?;
        }
        Ok(())
    }

    /// The reported jobs that ended in the months from `since` (seconds
    /// since the epoch) to now, newest month first: one file a month.
    pub fn reported_since(&self, since: u64, now: u64) -> Result<Vec<Entry>> {
        let (first, last) = (month_of(since), month_of(now));
        let mut months: Vec<String> = std::fs::read_dir(self.dir())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let month = name.strip_prefix("ended-")?.strip_suffix(".json")?;
                (month >= first.as_str() && month <= last.as_str()).then(|| month.to_string())
            })
            .collect();
        months.sort_by(|a, b| b.cmp(a));
        let mut found = Vec::new();
        for month in months {
            let file: Month =
                read_json(&self.dir().join(format!("ended-{month}.json")))?.unwrap_or_default();
            found.extend(file.jobs);
        }
        Ok(found)
    }

    /// The index a folder's claims make: every job's claim read once. A
    /// run that ended before the index existed is reported (its claim
    /// counts as delivered), priced from its claim and status.
    fn build(&self) -> Result<(Live, Vec<Entry>)> {
        let mut live = Live {
            schema_version: INDEX_SCHEMA,
            ..Live::default()
        };
        let mut reported = Vec::new();
        let dirs = std::fs::read_dir(&self.jobs_dir)
            .map_err(|e| Error::io(&self.jobs_dir, "read the jobs folder", e))?;
        for dir in dirs.filter_map(|e| e.ok()).map(|e| e.path()) {
            let Ok(text) = std::fs::read_to_string(dir.join(CLAIM_FILE)) else {
                continue;
            };
            let Ok(claim) = Claim::parse(&text) else {
                continue;
            };
            let end = claim
                .end
                .as_ref()
                .and_then(end_of_report)
                .or_else(|| ended_before_index(&claim, &dir));
            let entry = Entry::of(&claim, end);
            if entry.state == State::Reported {
                reported.push(entry);
            } else {
                live.jobs.push(entry);
            }
        }
        Ok((live, reported))
    }

    /// The last pass of `advance`, when one ran.
    pub fn last_pass(&self) -> Option<LastPass> {
        read_json(&self.dir().join(LAST_PASS_FILE)).ok().flatten()
    }

    /// Records a pass of `advance`.
    pub fn record_pass(&self, pass: &LastPass) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
        replace(&dir.join(LAST_PASS_FILE), &to_text(pass))
    }
}

/// The end of a run whose claim was written before the index (and before
/// runs recorded their end): its status, when its instance wrote a final
/// one in `dir`; the last attempt priced from its launch to the status's
/// end.
fn ended_before_index(claim: &Claim, dir: &Path) -> Option<End> {
    if !claim.reported() {
        return None;
    }
    let instance = claim.instance_id.as_deref()?;
    let status: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("status.json")).ok()?).ok()?;
    if status["instance_id"].as_str() != Some(instance) || status["final"] == false {
        return None;
    }
    let outcome = status["outcome"].as_str()?.to_string();
    let ended_at = status["ended_at"]
        .as_str()
        .and_then(parse_rfc3339)
        .unwrap_or(claim.heartbeat);
    let request = claim.request_of(instance);
    let price = request.and_then(|r| r.price_per_hour);
    let last = EndedAttempt {
        attempt: claim.attempt,
        instance_id: instance.to_string(),
        instance_type: request.map_or_else(
            || {
                status["instance_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            },
            |r| r.instance_type.clone(),
        ),
        market: request
            .map_or("unknown", |r| {
                crate::compile::model::Market::of_request(r.spot).name()
            })
            .to_string(),
        price_per_hour: price,
        launched_at: claim.launched_at,
        ended_at,
        outcome: outcome.clone(),
        state_reason: None,
        cost_usd: price.map(|p| catalog::job_cost(p, ended_at.saturating_sub(claim.launched_at))),
    };
    let attempts: Vec<EndedAttempt> = claim.earlier.iter().cloned().chain([last]).collect();
    Some(End {
        exit_code: crate::aws::status::exit_code(&outcome),
        status_exit_code: status["exit_code"].as_i64(),
        ended_at,
        message: status["message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .map(str::to_string),
        cost_usd: attempts.iter().map(|a| a.cost_usd).sum(),
        outcome,
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::claim::{Claims, Queued};

    fn claim(job: &str, since: u64, queued: bool) -> Claim {
        let mut c = Claim::new("p", job, 1, "sha", since);
        if queued {
            c.queued = Some(Queued {
                since,
                reason: "max_running".to_string(),
                retry_at: None,
                quota_errors: 0,
            });
        }
        c
    }

    #[test]
    fn queued_jobs_keep_their_order_and_running_ones_are_counted_by_profile() {
        let mut live = Live::default();
        live.put(Entry::of(&claim("b", 20, true), None));
        live.put(Entry::of(&claim("a", 30, true), None));
        live.put(Entry::of(&claim("c", 10, false), None));
        let mut other = claim("d", 5, false);
        other.profile = "q".to_string();
        live.put(Entry::of(&other, None));
        assert_eq!(live.running("p"), 1);
        assert_eq!(live.running("q"), 1);
        let order: Vec<&str> = live.queued().iter().map(|e| e.job.as_str()).collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!(live.position("a"), Some(2));
        assert_eq!(live.position("c"), None);
        // A later run replaces the job's entry; an earlier one never does.
        let mut rerun = claim("c", 40, false);
        rerun.run = 2;
        assert!(live.put(Entry::of(&rerun, None)).is_some());
        assert!(live.put(Entry::of(&claim("c", 50, false), None)).is_none());
        assert_eq!(live.get("c").unwrap().run, 2);
    }

    fn end(at: u64) -> End {
        End {
            outcome: "succeeded".to_string(),
            exit_code: 0,
            status_exit_code: Some(0),
            ended_at: at,
            message: None,
            attempts: vec![EndedAttempt {
                attempt: 1,
                instance_id: "i-1".to_string(),
                instance_type: "g6e.xlarge".to_string(),
                market: "spot".to_string(),
                price_per_hour: Some(0.67),
                launched_at: at - 3600,
                ended_at: at,
                outcome: "succeeded".to_string(),
                state_reason: None,
                cost_usd: Some(0.67),
            }],
            cost_usd: Some(0.67),
        }
    }

    #[test]
    fn reported_jobs_move_to_the_file_of_the_month_they_ended() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::of(dir.path());
        let november = parse_rfc3339("2026-11-30T23:00:00Z").unwrap();
        let december = parse_rfc3339("2026-12-02T10:00:00Z").unwrap();
        index
            .update(|live| {
                for (job, at) in [("old", november), ("new", december), ("live", 0)] {
                    let mut e = Entry::of(&claim(job, 1, false), None);
                    if at > 0 {
                        e.state = State::Ended;
                        e.end = Some(end(at));
                    }
                    live.put(e);
                }
            })
            .unwrap();
        assert_eq!(index.live().unwrap().jobs.len(), 3);
        index
            .update(|live| {
                for e in &mut live.jobs {
                    if e.state == State::Ended {
                        e.state = State::Reported;
                    }
                }
            })
            .unwrap();
        let live = index.live().unwrap();
        assert_eq!(live.jobs.len(), 1);
        assert_eq!(live.jobs[0].job, "live");
        let dec = index.reported_since(december - 86_400, december).unwrap();
        assert_eq!(dec.len(), 1, "only December's file is read");
        assert_eq!(dec[0].job, "new");
        let both = index.reported_since(november - 86_400, december).unwrap();
        let jobs: Vec<&str> = both.iter().map(|e| e.job.as_str()).collect();
        assert_eq!(jobs, ["new", "old"], "newest month first");
        let e = &both[0].end.as_ref().unwrap();
        assert_eq!(e.instance_seconds(), 3600);
        assert!((e.on_demand_usd().unwrap() - 1.861).abs() < 1e-9);
    }

    #[test]
    fn a_folder_from_before_the_index_is_built_from_its_claims_once() {
        let dir = tempfile::tempdir().unwrap();
        // Written by a bootforge before acknowledgements: ended, and live.
        for (job, ended) in [("before-1", true), ("before-2", false)] {
            let claims = Claims::open(dir.path(), dir.path(), job).unwrap();
            let text = format!(
                r#"{{"profile": "p", "job": "{job}", "run": 1, "launched_at": 1000,
                "payload_sha256": "sha", "holder": "h:1", "heartbeat": 1000,
                "requests": [{{"client_token": "t", "instance_type": "g6e.xlarge", "subnet": "s",
                  "spot": false, "result": "launched i-{job}", "price_per_hour": 1.861}}],
                "instance_id": "i-{job}", "failed": null}}"#
            );
            std::fs::write(claims.dir().join(CLAIM_FILE), text).unwrap();
            if ended {
                std::fs::write(
                    claims.dir().join("status.json"),
                    format!(
                        r#"{{"instance_id": "i-{job}", "outcome": "failed", "exit_code": 1,
                        "final": true, "ended_at": "{}", "message": "exit 1"}}"#,
                        rfc3339(1000 + 1800)
                    ),
                )
                .unwrap();
            }
        }
        let index = Index::of(dir.path());
        let live = index.live().unwrap();
        let jobs: Vec<&str> = live.jobs.iter().map(|e| e.job.as_str()).collect();
        assert_eq!(jobs, ["before-2"]);
        assert_eq!(live.jobs[0].state, State::Live);
        let reported = index.reported_since(0, 1000 + 1800).unwrap();
        assert_eq!(reported.len(), 1);
        let end = reported[0].end.as_ref().unwrap();
        assert_eq!((end.outcome.as_str(), end.exit_code), ("failed", 1));
        assert!(
            (end.cost_usd.unwrap() - 1.861 / 2.0).abs() < 1e-9,
            "{end:?}"
        );
        // Built once: a claim added later is not scanned for.
        Claims::open(dir.path(), dir.path(), "later").unwrap();
        std::fs::write(
            dir.path().join("later").join(CLAIM_FILE),
            std::fs::read_to_string(dir.path().join("before-2").join(CLAIM_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(index.live().unwrap().jobs.len(), 1);
    }

    #[test]
    fn passes_that_stopped_coming_are_told() {
        let pass = LastPass {
            at: rfc3339(1_000),
            at_epoch: 1_000,
            every: Some(30),
            by: "host:1".to_string(),
            followed: 3,
            ended: 0,
            took_ms: 12,
        };
        assert!(pass.late(1_000 + 90).is_none());
        assert!(pass.late(1_000 + 91).unwrap().contains("every 30s"));
        let unsaid = LastPass {
            every: None,
            ..pass
        };
        assert!(unsaid.late(1_000_000).is_none());
    }
}
