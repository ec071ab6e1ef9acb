//! One job, one instance at a time: the claim a launch makes on its job, in
//! the job's directory that the launching hosts share through the EFS.
//!
//! EC2's ClientToken makes one RunInstances call idempotent, never a job:
//! every fallback request has a token of its own, and a token's promise ends
//! with its instance. The claim is what makes a job launch once across
//! requests, processes and hosts. It records the run (its number), the
//! current attempt of that run (its number and the launch time every tag and
//! token derives from, so that a retried request is byte-identical), each
//! RunInstances request before it is sent, the instance once known, and the
//! run's earlier attempts (how each ended, on which market, at what price).
//! A launch that finds a live claim attaches to its attempt instead of
//! launching; one whose holder stopped refreshing it before an instance was
//! known takes it over and sends the same requests again, under the same
//! tokens.
//!
//! Every change happens under the claim's lock and is written whole by
//! rename (see [`crate::aws::files`]). The claim carries a
//! `schema_version`; one written before it counts as reported, and fields a
//! later bootforge adds are kept when this one rewrites it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use crate::aws::files::holder;
use crate::aws::files::{Lock, replace};
use crate::compile::model::Retry;
use crate::diagnostics::{Error, Result};

/// The claim's file in the job's directory; the instance never moves it.
pub const CLAIM_FILE: &str = "claim.json";
const LOCK_FILE: &str = ".claim.lock";
/// The claim's `schema_version` this bootforge writes. 1 (a claim without
/// the field) is every claim written before acknowledgements existed.
pub const CLAIM_SCHEMA: u32 = 2;
/// A holder that has not refreshed its claim for this long has stopped.
pub const HOLDER_STALE: Duration = Duration::from_secs(60);

/// One RunInstances request of an attempt, recorded before it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedRequest {
    pub client_token: String,
    pub instance_type: String,
    pub subnet: String,
    pub spot: bool,
    /// What EC2 answered, once it did (`launched i-…`, the error code…).
    pub result: Option<String>,
    /// The price an hour the instance is expected to cost on this market
    /// (the spot price known at launch, or the on-demand one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_hour: Option<f64>,
}

/// An attempt of the run that has ended, as the claim keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndedAttempt {
    pub attempt: u32,
    pub instance_id: String,
    pub instance_type: String,
    /// `spot` or `on-demand`.
    pub market: String,
    pub price_per_hour: Option<f64>,
    /// Seconds since the epoch: the attempt's launch, and when its end was
    /// seen.
    pub launched_at: u64,
    pub ended_at: u64,
    pub outcome: String,
    /// EC2's StateReason code, when it gave one.
    pub state_reason: Option<String>,
    /// Runtime × price, when the price is known.
    pub cost_usd: Option<f64>,
}

/// Why a job waits for its turn, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    /// Seconds since the epoch: when it was queued (queued jobs start in
    /// this order).
    pub since: u64,
    /// Why: the profile's `max_running`, or the account's quota.
    pub reason: String,
    /// Not tried again before this time (seconds since the epoch), after a
    /// quota error; a job that ends meanwhile frees a place sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    /// How many launches met a quota error.
    #[serde(default)]
    pub quota_errors: u32,
}

/// That the end of a run was delivered to whoever follows the jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub run: u32,
    /// Seconds since the epoch.
    pub at: u64,
    /// Who said it was delivered (`host:pid`).
    pub by: String,
}

/// A job's claim: the run that holds it, and its current attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The claim's format: [`CLAIM_SCHEMA`] when this bootforge wrote it.
    #[serde(default = "first_attempt")]
    pub schema_version: u32,
    pub profile: String,
    pub job: String,
    /// 1 for the job's first run; `launch --rerun` makes the next.
    pub run: u32,
    /// The run's current attempt: 1 for the first; a retry policy makes
    /// the next (same run, same checkpoint folder).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Seconds since the epoch: the launch time of the current attempt,
    /// which its tags and tokens derive from.
    pub launched_at: u64,
    pub payload_sha256: String,
    /// Who launches the attempt (`host:pid`), and when it last said so.
    pub holder: String,
    pub heartbeat: u64,
    /// The current attempt's RunInstances requests, in fallback order
    /// (claims written before attempts existed called them `attempts`).
    #[serde(alias = "attempts")]
    pub requests: Vec<ClaimedRequest>,
    pub instance_id: Option<String>,
    /// Why the attempt ended without an instance (no capacity, a quota…);
    /// a later launch of the job takes it over and tries again.
    pub failed: Option<String>,
    /// Who ended the current attempt on purpose (`bootforge terminate`),
    /// and when: such a job is never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_on_purpose: Option<String>,
    /// The run's earlier attempts, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<EndedAttempt>,
    /// The `--set` arguments the job was launched with: `advance` compiles
    /// the same payload from the profile and them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<String>,
    /// The profile's region, where EC2 is asked about the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The retry policy the run was launched under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Whether the run waits for its turn (no attempt launched yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<Queued>,
    /// The instance bootforge terminated itself (past its deadline, or
    /// stopped instead of terminated): never retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaped: Option<String>,
    /// When a pass of `advance` first found the attempt's instance gone
    /// without its status (seconds since the epoch): the status is looked
    /// for a while, as an NFS client may show a new file late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<u64>,
    /// The run's end once it is known: its report, as `launch --wait
    /// --json` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Json>,
    /// That the run's end was delivered (`advance --ack`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledged>,
    /// Fields a later bootforge wrote: kept as they are.
    #[serde(flatten)]
    pub unknown: serde_json::Map<String, Json>,
}

fn first_attempt() -> u32 {
    1
}

impl Claim {
    /// A new run of `job`, held by this process.
    pub fn new(profile: &str, job: &str, run: u32, payload_sha256: &str, now: u64) -> Claim {
        Claim {
            schema_version: CLAIM_SCHEMA,
            profile: profile.to_string(),
            job: job.to_string(),
            run,
            attempt: 1,
            launched_at: now,
            payload_sha256: payload_sha256.to_string(),
            holder: holder(),
            heartbeat: now,
            requests: Vec::new(),
            instance_id: None,
            failed: None,
            ended_on_purpose: None,
            earlier: Vec::new(),
            sets: Vec::new(),
            region: None,
            retry: None,
            queued: None,
            reaped: None,
            gone_since: None,
            end: None,
            acknowledged: None,
            unknown: serde_json::Map::new(),
        }
    }

    /// A claim from its file's text. One written before acknowledgements
    /// existed (no `schema_version`) counts as reported: the first pass
    /// after an upgrade must not announce every job in history.
    pub fn parse(text: &str) -> serde_json::Result<Claim> {
        let mut claim: Claim = serde_json::from_str(text)?;
        if claim.schema_version < CLAIM_SCHEMA && claim.acknowledged.is_none() {
            claim.acknowledged = Some(Acknowledged {
                run: claim.run,
                at: 0,
                by: "written before acknowledgements: counts as reported".to_string(),
            });
        }
        Ok(claim)
    }

    /// Whether the end of its run was delivered.
    pub fn reported(&self) -> bool {
        self.acknowledged
            .as_ref()
            .is_some_and(|a| a.run == self.run)
    }

    /// The request of the current attempt that launched instance `id`.
    pub fn request_of(&self, id: &str) -> Option<&ClaimedRequest> {
        self.requests.iter().find(|r| {
            r.result
                .as_deref()
                .and_then(|r| r.strip_prefix("launched "))
                == Some(id)
        })
    }

    /// Whether its run has ended (its end is recorded).
    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// Its current attempt: (run, attempt).
    pub fn key(&self) -> (u32, u32) {
        (self.run, self.attempt)
    }

    /// How many of the run's earlier attempts were interrupted.
    pub fn interruptions(&self) -> u32 {
        self.earlier
            .iter()
            .filter(|a| a.outcome == "interrupted")
            .count() as u32
    }

    /// The next attempt of the run, after the current one ended as `ended`
    /// says, held by this process from `now`.
    pub fn next_attempt(&self, ended: EndedAttempt, now: u64) -> Claim {
        let mut next = self.clone();
        next.earlier.push(ended);
        next.attempt += 1;
        next.launched_at = now;
        next.holder = holder();
        next.heartbeat = now;
        next.requests.clear();
        next.instance_id = None;
        next.failed = None;
        next.ended_on_purpose = None;
        next.gone_since = None;
        next.reaped = None;
        next
    }

    /// Whether its holder still refreshes it.
    pub fn holder_alive(&self, now: u64) -> bool {
        now.saturating_sub(self.heartbeat) < HOLDER_STALE.as_secs()
    }

    /// Whether this process holds it.
    pub fn mine(&self) -> bool {
        self.holder == holder()
    }
}

/// Where this host keeps the claims of jobs whose directory it does not
/// see (no shared EFS): `$XDG_STATE_HOME/bootforge/claims`, by default
/// under `~/.local/state`.
pub fn local_claims() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("bootforge/claims")
}

/// The folder of the jobs of `compiled`'s profile on this host: its
/// `host_log_dir` (the EFS, shared with the other launching hosts), or,
/// when that is not here, where this host keeps claims.
pub fn jobs_dir(compiled: &crate::compile::Compiled) -> PathBuf {
    let job = &compiled.profile.profile.job;
    let host_dir = Path::new(job.host_log_dir.as_deref().unwrap_or(&job.log_dir));
    if host_dir.is_dir() {
        host_dir.to_path_buf()
    } else {
        local_claims()
    }
}

/// Where a job's claim lives.
#[derive(Debug, Clone)]
pub struct Claims {
    dir: PathBuf,
    /// False when the job's directory was not reachable and the claim lives
    /// on this host only.
    pub shared: bool,
}

impl Claims {
    /// The claim of job `job` in `host_log_dir/job`; when `host_log_dir` is
    /// not there (the EFS is not mounted on this host), in `local/job`.
    pub fn open(host_log_dir: &Path, local: &Path, job: &str) -> Result<Claims> {
        let (dir, shared) = if host_log_dir.is_dir() {
            (host_log_dir.join(job), true)
        } else {
            (local.join(job), false)
        };
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create the job's directory", e))?;
        Ok(Claims { dir, shared })
    }

    /// The claim of job `job` in the jobs folder `jobs_dir`, which this
    /// host shares with the others (nothing is created).
    pub fn in_folder(jobs_dir: &Path, job: &str) -> Claims {
        Claims {
            dir: jobs_dir.join(job),
            shared: true,
        }
    }

    /// The job's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder that holds the job's directory (and the index of jobs).
    pub fn jobs_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// The claim as it is now.
    pub fn read(&self) -> Result<Option<Claim>> {
        let path = self.dir.join(CLAIM_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Claim::parse(&text).map(Some).map_err(|e| Error::Usage {
                message: format!(
                    "{} is not a claim bootforge can read ({e}); move it aside to start the job afresh",
                    path.display()
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, "read", e)),
        }
    }

    /// Changes the claim under the lock: `change` sees it as it is and says
    /// what it becomes (`None` leaves it) and what to return.
    pub fn update<T>(&self, change: impl FnOnce(Option<Claim>) -> (Option<Claim>, T)) -> Result<T> {
        let _lock = self.lock()?;
        let current = self.read()?;
        let (next, out) = change(current.clone());
        if let Some(next) = next
            && Some(&next) != current.as_ref()
        {
            self.write(&next)?;
        }
        Ok(out)
    }

    /// Records that the current attempt's instance `instance` is being
    /// ended on purpose (by `bootforge terminate`), so that no retry policy
    /// starts another attempt. False when the claim's attempt is on another
    /// instance.
    pub fn end_on_purpose(&self, instance: &str, at: u64) -> Result<bool> {
        let who = format!(
            "bootforge terminate ({}) at {}",
            holder(),
            crate::clock::rfc3339(at)
        );
        self.set_ended_on_purpose(instance, Some(who))
    }

    /// Takes back [`Claims::end_on_purpose`] for `instance`, when EC2
    /// refused to terminate it.
    pub fn not_ended(&self, instance: &str) -> Result<bool> {
        self.set_ended_on_purpose(instance, None)
    }

    fn set_ended_on_purpose(&self, instance: &str, who: Option<String>) -> Result<bool> {
        self.update(|c| match c {
            Some(mut c) if c.instance_id.as_deref() == Some(instance) => {
                c.ended_on_purpose = who;
                (Some(c), true)
            }
            _ => (None, false),
        })
    }

    fn write(&self, claim: &Claim) -> Result<()> {
        let mut claim = claim.clone();
        // A later bootforge's version stays: its fields are kept too.
        claim.schema_version = claim.schema_version.max(CLAIM_SCHEMA);
        let text = serde_json::to_string_pretty(&claim).map_err(|e| Error::Usage {
            message: format!("the claim of job {} cannot be written: {e}", claim.job),
        })?;
        replace(&self.dir.join(CLAIM_FILE), &text)
    }

    fn lock(&self) -> Result<Lock> {
        Lock::take(&self.dir.join(LOCK_FILE), "the claim of this job")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::files::LOCK_STALE;

    #[test]
    fn concurrent_updates_never_lose_one() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::open(dir.path(), dir.path(), "job").unwrap();
        claims
            .update(|_| (Some(Claim::new("p", "job", 1, "sha", 100)), ()))
            .unwrap();
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let claims = claims.clone();
                std::thread::spawn(move || {
                    for k in 0..10 {
                        claims
                            .update(|c| {
                                let mut c = c.unwrap();
                                c.requests.push(ClaimedRequest {
                                    client_token: format!("{n}-{k}"),
                                    instance_type: String::new(),
                                    subnet: String::new(),
                                    spot: false,
                                    result: None,
                                    price_per_hour: None,
                                });
                                (Some(c), ())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(claims.read().unwrap().unwrap().requests.len(), 80);
    }

    #[test]
    fn a_stale_lock_is_broken_and_a_live_holder_is_told_from_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::open(dir.path(), dir.path(), "job").unwrap();
        let lock = claims.dir().join(LOCK_FILE);
        fs::write(&lock, "gone:1 0\n").unwrap();
        let old = std::time::SystemTime::now() - LOCK_STALE * 3;
        fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        claims
            .update(|_| (Some(Claim::new("p", "job", 1, "sha", 1_000)), ()))
            .unwrap();
        assert!(!lock.exists());
        let c = claims.read().unwrap().unwrap();
        assert!(c.mine());
        assert!(c.holder_alive(1_000 + 59));
        assert!(!c.holder_alive(1_000 + 60));
    }

    #[test]
    fn a_claim_written_before_attempts_reads_as_the_first_attempt() {
        let old = r#"{"profile": "p", "job": "j", "run": 2, "launched_at": 100,
            "payload_sha256": "sha", "holder": "h:1", "heartbeat": 100,
            "attempts": [{"client_token": "t", "instance_type": "g6e.xlarge",
                "subnet": "s", "spot": false, "result": "launched i-1"}],
            "instance_id": "i-1", "failed": null}"#;
        let c: Claim = serde_json::from_str(old).unwrap();
        assert_eq!((c.run, c.attempt), (2, 1));
        assert_eq!(c.requests.len(), 1);
        assert!(c.earlier.is_empty());
        let ended = EndedAttempt {
            attempt: 1,
            instance_id: "i-1".to_string(),
            instance_type: "g6e.xlarge".to_string(),
            market: "spot".to_string(),
            price_per_hour: Some(0.67),
            launched_at: 100,
            ended_at: 200,
            outcome: "interrupted".to_string(),
            state_reason: Some("Server.SpotInstanceTermination".to_string()),
            cost_usd: None,
        };
        let next = c.next_attempt(ended, 300);
        assert_eq!((next.run, next.attempt, next.launched_at), (2, 2, 300));
        assert!(next.requests.is_empty() && next.instance_id.is_none());
        assert_eq!(next.interruptions(), 1);
        assert!(next.mine());
    }

    #[test]
    fn an_old_claim_counts_as_reported_and_unknown_fields_are_kept() {
        let old = r#"{"profile": "p", "job": "j", "run": 2, "launched_at": 100,
            "payload_sha256": "sha", "holder": "h:1", "heartbeat": 100,
            "requests": [], "instance_id": "i-1", "failed": null}"#;
        let c = Claim::parse(old).unwrap();
        assert_eq!(c.schema_version, 1);
        assert!(c.reported(), "a claim from before acknowledgements");
        let mut next = c.clone();
        next.run = 3;
        assert!(!next.reported(), "its acknowledgement is of run 2");

        let later = r#"{"schema_version": 3, "profile": "p", "job": "j", "run": 1,
            "launched_at": 100, "payload_sha256": "sha", "holder": "h:1", "heartbeat": 100,
            "requests": [], "instance_id": null, "failed": null,
            "priority": {"level": 7}, "owner": "ana"}"#;
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::open(dir.path(), dir.path(), "j").unwrap();
        std::fs::write(claims.dir().join(CLAIM_FILE), later).unwrap();
        assert!(!claims.read().unwrap().unwrap().reported());
        claims
            .update(|c| {
                let mut c = c.unwrap();
                c.heartbeat = 200;
                (Some(c), ())
            })
            .unwrap();
        let written: Json =
            serde_json::from_str(&std::fs::read_to_string(claims.dir().join(CLAIM_FILE)).unwrap())
                .unwrap();
        assert_eq!(written["priority"]["level"], 7, "{written:#}");
        assert_eq!(written["owner"], "ana");
        assert_eq!(written["heartbeat"], 200);
        assert_eq!(written["schema_version"], 3);
    }

    #[test]
    fn without_the_shared_directory_the_claim_is_local() {
        let local = tempfile::tempdir().unwrap();
        let claims = Claims::open(Path::new("/nonexistent/efs"), local.path(), "job").unwrap();
        assert!(!claims.shared);
        assert_eq!(claims.dir(), local.path().join("job"));
    }
}
