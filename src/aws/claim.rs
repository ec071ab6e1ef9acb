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
//! Every change happens under a lock file made by exclusive create (which
//! NFSv4 honours), and is written to a temporary file renamed over the claim
//! (atomic on NFS too). A lock left by a dead process is broken after
//! [`LOCK_STALE`].

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::now;
use crate::diagnostics::{Error, Result};

/// The claim's file in the job's directory; the instance never moves it.
pub const CLAIM_FILE: &str = "claim.json";
const LOCK_FILE: &str = ".claim.lock";
/// A lock older than this was left by a process that died holding it.
pub const LOCK_STALE: Duration = Duration::from_secs(30);
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

/// A job's claim: the run that holds it, and its current attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
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
}

fn first_attempt() -> u32 {
    1
}

impl Claim {
    /// A new run of `job`, held by this process.
    pub fn new(profile: &str, job: &str, run: u32, payload_sha256: &str, now: u64) -> Claim {
        Claim {
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
        }
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

/// This process, as a claim's holder: `host:pid`.
pub fn holder() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}", std::process::id())
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

    /// The job's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The claim as it is now.
    pub fn read(&self) -> Result<Option<Claim>> {
        let path = self.dir.join(CLAIM_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| Error::Usage {
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
        let tmp = self
            .dir
            .join(format!(".claim.json.{}", holder().replace([':', '/'], "-")));
        let text = serde_json::to_string_pretty(claim).map_err(|e| Error::Usage {
            message: format!("the claim of job {} cannot be written: {e}", claim.job),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(CLAIM_FILE))
        };
        write().map_err(|e| Error::io(self.dir.join(CLAIM_FILE), "write", e))
    }

    fn lock(&self) -> Result<Lock> {
        let path = self.dir.join(LOCK_FILE);
        let start = std::time::Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{} {}", holder(), now());
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| m.elapsed().ok());
                    if age.is_some_and(|a| a > LOCK_STALE) {
                        // Broken by renaming: of two breakers, one succeeds.
                        let aside = self.dir.join(format!(
                            ".claim.lock.stale.{}",
                            holder().replace([':', '/'], "-")
                        ));
                        if fs::rename(&path, &aside).is_ok() {
                            let _ = fs::remove_file(&aside);
                        }
                        continue;
                    }
                    if start.elapsed() > LOCK_STALE * 2 {
                        return Err(Error::Environment {
                            message: format!("{} stays locked", path.display()),
                            help: Some("another launch of this job is stuck holding it; remove the file if no launch runs".to_string()),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io(&path, "create", e)),
            }
        }
    }
}

/// The lock, released when dropped.
struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn without_the_shared_directory_the_claim_is_local() {
        let local = tempfile::tempdir().unwrap();
        let claims = Claims::open(Path::new("/nonexistent/efs"), local.path(), "job").unwrap();
        assert!(!claims.shared);
        assert_eq!(claims.dir(), local.path().join("job"));
    }
}
