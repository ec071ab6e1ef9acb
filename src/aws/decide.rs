//! What a launch does about the job's claim as it finds it: launch a run,
//! attach to the one that runs, wait for the launch another process is
//! making, queue the job behind the profile's `max_running`, report a run
//! that has ended, or refuse. Taken under the claim's lock, and for a place
//! among the running jobs under the index's too (always in that order), so
//! that of two launches, passes or hosts one wins. EC2 and the local engine
//! both launch through it (`operate`, `smoke::local`), and so does a pass of
//! `advance`.

use std::time::{Duration, Instant};

use crate::aws::claim::{Claim, Claims, Queued};
use crate::aws::index::{Entry, Index, Live, State};
use crate::clock::now;
use crate::compile::Compiled;
use crate::diagnostics::{Error, Result};

/// How long a launch waits for another launch of the same job that holds
/// its claim and is still starting the instance.
pub const ATTACH_BOUND: Duration = Duration::from_secs(600);

/// After the account's quota refused a launch, the job waits this long in
/// the queue before it is tried again (sooner when a job ends).
pub const QUOTA_RETRY: Duration = Duration::from_secs(120);

/// What a launch does about the job's claim as it finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// This launch holds the run: it sends the run's attempts.
    Launch(Claim),
    /// The run has its instance: follow it.
    Attach(Claim),
    /// Another launch is starting the run: wait for its instance.
    Wait(Claim),
    /// The run waits for its turn, at this place among its profile's queued
    /// jobs (1 is next).
    Queued(Claim, usize),
    /// The run has ended: its claim holds its report.
    Ended(Claim),
    /// Nothing to do but say why.
    Refuse(String),
}

/// The rules of the claim, as a pure function of what is there. `fresh` is
/// the claim of a new first run of the job, held by this process from
/// `now`; `ended` says whether the claimed run's instance has terminated
/// (asked beforehand, for `--rerun`).
pub fn decide(
    current: Option<&Claim>,
    fresh: &Claim,
    rerun: bool,
    ended: bool,
    now: u64,
) -> Decision {
    let (profile, job) = (fresh.profile.as_str(), fresh.job.as_str());
    let new_run = |run| {
        let mut c = fresh.clone();
        c.run = run;
        c
    };
    let Some(c) = current else {
        return Decision::Launch(new_run(1));
    };
    if c.profile != profile {
        return Decision::Refuse(format!(
            "job {job} belongs to profile {} (run {}); a job id names one job: give this one another id",
            c.profile, c.run
        ));
    }
    let launching_now = c.instance_id.is_none()
        && c.failed.is_none()
        && c.queued.is_none()
        && c.end.is_none()
        && c.holder_alive(now);
    let unresolved = c.requests.iter().any(|a| a.result.is_none());
    if rerun {
        return match (&c.instance_id, ended || c.ended()) {
            (_, _) if c.queued.is_some() => Decision::Refuse(format!(
                "run {} of job {job} is queued and has not started: there is nothing to run again",
                c.run
            )),
            (Some(id), false) => Decision::Refuse(format!(
                "run {} of job {job} still runs on {id}: a rerun would be a second GPU for one job; wait for it, or `bootforge terminate --job {job}` first",
                c.run
            )),
            (None, _) if launching_now && !c.mine() => Decision::Refuse(format!(
                "run {} of job {job} is being launched right now by {}; wait for it",
                c.run, c.holder
            )),
            _ => Decision::Launch(new_run(c.run + 1)),
        };
    }
    if c.ended() {
        return Decision::Ended(c.clone());
    }
    if c.queued.is_some() {
        return Decision::Queued(c.clone(), 0);
    }
    if c.instance_id.is_some() {
        return Decision::Attach(c.clone());
    }
    if launching_now && !c.mine() {
        return Decision::Wait(c.clone());
    }
    if c.payload_sha256 != fresh.payload_sha256 {
        // Its attempts used other tokens: one still unanswered may have
        // started an instance nobody recorded.
        if unresolved && c.failed.is_none() {
            return Decision::Refuse(format!(
                "run {} of job {job} was being launched with another payload when its launcher ({}) stopped, and may have started an instance: look with `bootforge ps`, then `launch --rerun`",
                c.run, c.holder
            ));
        }
        return Decision::Launch(new_run(c.run + 1));
    }
    // The run failed before an instance (capacity…), or its holder
    // stopped: take it over, with the same tokens.
    let mut taken = c.clone();
    taken.holder = crate::aws::claim::holder();
    taken.heartbeat = now;
    taken.failed = None;
    Decision::Launch(taken)
}

/// The claim of a new first run of `compiled`'s job, held by this process
/// from `now`: what `advance` needs to continue it (the `--set` arguments,
/// the region, the retry policy) recorded with it.
pub fn fresh_claim(compiled: &Compiled, now: u64) -> Claim {
    let p = &compiled.profile.profile;
    let mut c = Claim::new(
        &compiled.profile.name,
        &p.job.id,
        1,
        &compiled.payload.sha256(),
        now,
    );
    c.sets = compiled.sets.clone();
    c.region = Some(p.instance.region.clone());
    c.retry = p.job.retry.clone();
    c
}

/// Where a run that wants to launch stands against its profile's
/// `max_running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// It may launch: it holds a place among the running jobs.
    Now,
    /// It waits, at this place among the queued jobs of its profile.
    Later(usize),
}

/// Under the index's lock (taken inside the claim's): whether `claim`, a
/// new run or a queued one, may launch now, and the index as it then
/// stands. Queued jobs launch in the order they came: with k places free,
/// the first k may. One the quota refused waits until its `retry_at`.
pub fn turn(index: &Index, claim: &Claim, max_running: Option<u32>, now: u64) -> Result<Turn> {
    index.update(|live| {
        let turn = place(live, claim, max_running, now);
        let mut entry = Entry::of(claim, None);
        match turn {
            Turn::Now => entry.state = State::Live,
            Turn::Later(_) => {
                entry.state = State::Queued;
                entry.since = claim.queued.as_ref().map_or(now, |q| q.since);
            }
        }
        live.put(entry);
        turn
    })
}

/// [`turn`]'s rule, on the index as it is.
fn place(live: &Live, claim: &Claim, max_running: Option<u32>, now: u64) -> Turn {
    let (since, job) = (claim.queued.as_ref().map_or(now, |q| q.since), &claim.job);
    let ahead = live
        .queued()
        .iter()
        .filter(|e| e.profile == claim.profile && (e.since, &e.job) < (since, job))
        .count();
    let blocked = claim
        .queued
        .as_ref()
        .and_then(|q| q.retry_at)
        .is_some_and(|at| at > now);
    let running = live
        .jobs
        .iter()
        .filter(|e| e.profile == claim.profile && e.state == State::Live && e.job != *job)
        .count();
    let free = max_running.map_or(usize::MAX, |m| (m as usize).saturating_sub(running));
    if blocked || ahead >= free {
        Turn::Later(ahead + 1)
    } else {
        Turn::Now
    }
}

/// The claim of a queued run that gets its turn: its attempt launched now
/// (tags, tokens and deadline from now), by this process.
fn promoted(mut claim: Claim, now: u64) -> Claim {
    claim.queued = None;
    claim.launched_at = now;
    claim.requests.clear();
    claim.failed = None;
    claim.holder = crate::aws::claim::holder();
    claim.heartbeat = now;
    claim
}

/// The decision for `compiled`'s job, taken under the claim's lock: a launch
/// (or the job queued) is written into the claim as it is decided, so that
/// one launch of a job wins. `ended`: whether the claimed run's instance
/// has ended (for `--rerun`).
pub fn claim_step(
    claims: &Claims,
    compiled: &Compiled,
    rerun: bool,
    ended: bool,
) -> Result<Decision> {
    let max_running = compiled.profile.profile.job.max_running;
    let index = Index::of(claims.jobs_dir());
    claims
        .update(|current| {
            let now = now();
            let decision = decide(
                current.as_ref(),
                &fresh_claim(compiled, now),
                rerun,
                ended,
                now,
            );
            let new_run = |c: &Claim| current.as_ref().is_none_or(|cur| cur.run != c.run);
            let decided = match decision {
                Decision::Launch(c) if new_run(&c) => match turn(&index, &c, max_running, now) {
                    Ok(Turn::Now) => Ok(Decision::Launch(c)),
                    Ok(Turn::Later(at)) => {
                        let mut c = c;
                        c.queued = Some(Queued {
                            since: now,
                            reason: format!(
                                "job.max_running: {} jobs of profile {} run at once",
                                max_running.unwrap_or_default(),
                                c.profile
                            ),
                            retry_at: None,
                            quota_errors: 0,
                        });
                        Ok(Decision::Queued(c, at))
                    }
                    Err(e) => Err(e),
                },
                Decision::Queued(c, _) => match turn(&index, &c, max_running, now) {
                    Ok(Turn::Now) => Ok(Decision::Launch(promoted(c, now))),
                    Ok(Turn::Later(at)) => Ok(Decision::Queued(c, at)),
                    Err(e) => Err(e),
                },
                other => Ok(other),
            };
            match &decided {
                Ok(Decision::Launch(c) | Decision::Queued(c, _)) => (Some(c.clone()), decided),
                _ => (None, decided),
            }
        })
        .and_then(|d| d)
}

/// Puts the claim's attempt `key` back in the queue after the account's
/// quota refused it (`why`): not tried again for [`QUOTA_RETRY`], unless a
/// job ends first. Its place among the running jobs is given up.
pub fn requeue(claims: &Claims, key: (u32, u32), why: &str) -> Result<Option<Claim>> {
    let index = Index::of(claims.jobs_dir());
    claims
        .update(
            |c| match c.filter(|c| c.key() == key && c.instance_id.is_none()) {
                Some(mut c) => {
                    let now = now();
                    let quota_errors = c.queued.as_ref().map_or(0, |q| q.quota_errors) + 1;
                    c.queued = Some(Queued {
                        since: c.launched_at,
                        reason: format!("the account's quota: {why}"),
                        retry_at: Some(now + QUOTA_RETRY.as_secs()),
                        quota_errors,
                    });
                    c.failed = None;
                    c.heartbeat = now;
                    let entry = Entry::of(&c, None);
                    let indexed = index.update(|live| {
                        live.put(entry);
                    });
                    (Some(c.clone()), indexed.map(|()| Some(c)))
                }
                None => (None, Ok(None)),
            },
        )
        .and_then(|r| r)
}

/// Records how attempt `key` (run, attempt) of the claim stands: its
/// instance once known, or why it has none.
pub fn settle(
    claims: &Claims,
    key: (u32, u32),
    instance: Option<&str>,
    failed: Option<String>,
) -> Result<()> {
    claims.update(|c| match c.filter(|c| c.key() == key) {
        Some(mut c) => {
            if let Some(id) = instance {
                c.instance_id = Some(id.to_string());
            }
            c.failed = failed;
            c.heartbeat = now();
            (Some(c), ())
        }
        None => (None, ()),
    })
}

/// Waiting on `claim`, a run another launch holds: an error once it has
/// been starting for longer than [`ATTACH_BOUND`] without an instance.
pub fn still_starting(claims: &Claims, claim: &Claim, since: Instant) -> Result<()> {
    if since.elapsed() <= ATTACH_BOUND {
        return Ok(());
    }
    Err(Error::Environment {
        message: format!(
            "run {} of job {} has been starting for {}s under {} without an instance",
            claim.run,
            claim.job,
            since.elapsed().as_secs(),
            claim.holder
        ),
        help: Some(format!(
            "see {}",
            claims.dir().join(crate::aws::claim::CLAIM_FILE).display()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::claim::ClaimedRequest;

    fn claim(run: u32, instance: Option<&str>, holder_alive: bool, mine: bool) -> Claim {
        let mut c = Claim::new("p", "j", run, "sha", 1_000);
        if !mine {
            c.holder = "elsewhere:1".to_string();
        }
        if !holder_alive {
            c.heartbeat = 0;
        }
        c.instance_id = instance.map(str::to_string);
        c
    }

    #[test]
    fn the_claim_decides_launch_attach_wait_queue_report_or_refuse() {
        let fresh = Claim::new("p", "j", 1, "sha", 1_010);
        let d =
            |c: Option<&Claim>, rerun: bool, ended: bool| decide(c, &fresh, rerun, ended, 1_010);
        assert!(
            matches!(d(None, false, false), Decision::Launch(c) if c.run == 1 && c.launched_at == 1_010)
        );
        let running = claim(1, Some("i-1"), true, false);
        assert!(matches!(
            d(Some(&running), false, false),
            Decision::Attach(_)
        ));
        let starting = claim(1, None, true, false);
        assert!(matches!(
            d(Some(&starting), false, false),
            Decision::Wait(_)
        ));
        // A dead holder's run is taken over with its launch time: same tokens.
        let dead = claim(1, None, false, false);
        assert!(
            matches!(d(Some(&dead), false, false), Decision::Launch(c) if c.run == 1 && c.launched_at == 1_000 && c.mine())
        );
        // A run that failed before an instance is tried again.
        let mut failed = claim(1, None, true, false);
        failed.failed = Some("no capacity".to_string());
        assert!(matches!(d(Some(&failed), false, false), Decision::Launch(c) if c.run == 1));
        // --rerun: only once the run's instance has ended.
        assert!(
            matches!(d(Some(&running), true, false), Decision::Refuse(m) if m.contains("still runs on i-1"))
        );
        assert!(
            matches!(d(Some(&running), true, true), Decision::Launch(c) if c.run == 2 && c.launched_at == 1_010)
        );
        assert!(matches!(
            d(Some(&starting), true, false),
            Decision::Refuse(_)
        ));
        // A run whose end is recorded is reported, or run again on purpose.
        let mut over = running.clone();
        over.end = Some(serde_json::json!({"wait": {"outcome": "succeeded"}}));
        assert!(matches!(d(Some(&over), false, false), Decision::Ended(_)));
        assert!(matches!(d(Some(&over), true, false), Decision::Launch(c) if c.run == 2));
        // A queued run waits for its turn; it has nothing to run again.
        let mut queued = claim(1, None, true, false);
        queued.queued = Some(Queued {
            since: 1_000,
            reason: "max_running".to_string(),
            retry_at: None,
            quota_errors: 0,
        });
        assert!(matches!(
            d(Some(&queued), false, false),
            Decision::Queued(..)
        ));
        assert!(matches!(
            d(Some(&queued), true, false),
            Decision::Refuse(m) if m.contains("queued")
        ));
        // Another profile's job of the same id.
        let other = Claim::new("q", "j", 1, "sha", 1_010);
        assert!(matches!(
            decide(Some(&running), &other, false, false, 1_010),
            Decision::Refuse(_)
        ));
        // Another payload while an attempt is unanswered: refuse.
        let mut unsure = claim(1, None, false, false);
        unsure.requests.push(ClaimedRequest {
            client_token: "t".to_string(),
            instance_type: "g6e.xlarge".to_string(),
            subnet: "s".to_string(),
            spot: false,
            result: None,
            price_per_hour: None,
        });
        let changed = Claim::new("p", "j", 1, "other", 1_010);
        assert!(matches!(
            decide(Some(&unsure), &changed, false, false, 1_010),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn queued_jobs_get_their_turn_in_the_order_they_came() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::of(dir.path());
        let job = |name: &str| Claim::new("p", name, 1, "sha", 1_000);
        // Two places: a and b run, c and d queue behind them.
        assert_eq!(turn(&index, &job("a"), Some(2), 1_000).unwrap(), Turn::Now);
        assert_eq!(turn(&index, &job("b"), Some(2), 1_001).unwrap(), Turn::Now);
        let mut c = job("c");
        assert_eq!(turn(&index, &c, Some(2), 1_002).unwrap(), Turn::Later(1));
        c.queued = Some(Queued {
            since: 1_002,
            reason: String::new(),
            retry_at: None,
            quota_errors: 0,
        });
        let mut d = job("d");
        assert_eq!(turn(&index, &d, Some(2), 1_003).unwrap(), Turn::Later(2));
        d.queued = Some(Queued {
            since: 1_003,
            ..c.queued.clone().unwrap()
        });
        // Another profile has places of its own.
        let mut other = job("e");
        other.profile = "q".to_string();
        assert_eq!(turn(&index, &other, Some(1), 1_004).unwrap(), Turn::Now);
        // a ends: c's turn, not d's.
        index
            .update(|live| {
                for e in &mut live.jobs {
                    if e.job == "a" {
                        e.state = State::Ended;
                    }
                }
            })
            .unwrap();
        assert_eq!(turn(&index, &d, Some(2), 1_010).unwrap(), Turn::Later(2));
        assert_eq!(turn(&index, &c, Some(2), 1_010).unwrap(), Turn::Now);
        assert_eq!(turn(&index, &d, Some(2), 1_011).unwrap(), Turn::Later(1));
        // Without a limit every job runs; a job the quota refused waits for
        // its time.
        let mut refused = job("f");
        refused.queued = Some(Queued {
            since: 900,
            reason: "quota".to_string(),
            retry_at: Some(2_000),
            quota_errors: 1,
        });
        assert_eq!(turn(&index, &refused, None, 1_500).unwrap(), Turn::Later(1));
        assert_eq!(turn(&index, &refused, None, 2_000).unwrap(), Turn::Now);
    }

    #[test]
    fn a_launch_beyond_max_running_is_queued_in_its_claim() {
        let dir = tempfile::tempdir().unwrap();
        let library = crate::Library::builtin();
        let compile = |job: &str| {
            let sets = [
                crate::compile::overrides::Override::parse(&format!("job_id={job}")).unwrap(),
                crate::compile::overrides::Override::parse("job.max_running=1").unwrap(),
            ];
            crate::compile(&library, crate::DEFAULT_PROFILE, &sets).unwrap()
        };
        let first = Claims::open(dir.path(), dir.path(), "first").unwrap();
        let d = claim_step(&first, &compile("first"), false, false).unwrap();
        let Decision::Launch(c) = d else {
            panic!("{d:?}")
        };
        assert_eq!(c.sets, ["job_id=first", "job.max_running=1"]);
        assert_eq!(c.region.as_deref(), Some("us-east-2"));
        let second = Claims::open(dir.path(), dir.path(), "second").unwrap();
        let d = claim_step(&second, &compile("second"), false, false).unwrap();
        assert!(
            matches!(&d, Decision::Queued(c, 1) if c.queued.is_some()),
            "{d:?}"
        );
        assert!(second.read().unwrap().unwrap().queued.is_some());
        // Asked again while the first runs: still queued, nothing launched.
        let d = claim_step(&second, &compile("second"), false, false).unwrap();
        assert!(matches!(d, Decision::Queued(_, 1)));
        // The quota refuses the first: it goes back to the queue, ahead.
        requeue(&first, (1, 1), "VcpuLimitExceeded").unwrap();
        let live = Index::of(dir.path()).live().unwrap();
        assert_eq!(live.position("first"), Some(1));
        assert_eq!(live.position("second"), Some(2));
    }
}
