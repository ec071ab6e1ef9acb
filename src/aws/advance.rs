//! `advance`: one pass over every live job of a jobs folder, so that no
//! process has to wait on any of them. It asks where the instances run
//! once for all of them (EC2: one DescribeInstances by tag, terminated
//! ones included, and one by id for claimed instances the tag filter does
//! not show yet), reads each live job's status from the EFS, continues
//! retry policies (the next attempt launched at once), terminates what
//! outlived its deadline, starts queued jobs in the order they came as
//! places free, and records each end in its job's claim. It reports every
//! job that has ended and whose end was not yet acknowledged (`--ack`).
//!
//! A pass never sleeps or waits on an instance: what is not known yet is
//! looked at again by the next pass. Two passes at once (on one host or
//! two) never launch two attempts of one job: every move goes through the
//! job's claim, under its lock, as `launch` does. Each job is continued
//! with its own profile and `--set` arguments, as its claim records them;
//! one that cannot be continued (its profile gone, its payload changed) is
//! ended with the reason, never relaunched as a new run.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::aws::claim::{Claim, Claims};
use crate::aws::decide::{Decision, claim_step};
use crate::aws::ec2::Instance;
use crate::aws::index::{Entry, Index, LastPass, end_of_report};
use crate::aws::operate::{Launched, Started};
use crate::aws::plan::RunRequest;
use crate::aws::reap::Termination;
use crate::aws::report::{self, Report, max_attempts};
use crate::aws::retry::{self, Verdict};
use crate::aws::wait::{Finished, read_status};
use crate::check::catalog;
use crate::clock::{now, rfc3339};
use crate::compile::library::Library;
use crate::compile::overrides::Override;
use crate::compile::{Compiled, compile};
use crate::diagnostics::{Error, Result};
use crate::progress::Event;

/// A claim whose launch failed before any instance (no capacity anywhere,
/// a refusal) is left this long to its launcher's own retries, then ended
/// `launch_failed`.
pub const FAILED_GRACE: Duration = Duration::from_secs(600);

/// How a pass goes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a status is looked for after its instance is gone (an NFS
    /// client may show a new file late).
    pub status_grace: Duration,
    /// No attempt is launched once the pass has run this long: the rest
    /// waits for the next pass.
    pub budget: Duration,
    /// How often passes are meant to come, recorded for `status` and
    /// `jobs` to tell when they stop.
    pub every: Option<Duration>,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Every job that has ended and whose end was not acknowledged yet, its
    /// report as `launch --wait --json` prints it.
    pub ended: Vec<Report>,
    /// What it launched (`JOB run R attempt A on ID`), terminated, and
    /// could not do, for people.
    pub launched: Vec<String>,
    pub terminated: Vec<String>,
    pub problems: Vec<String>,
    /// The live jobs it followed.
    pub followed: usize,
}

/// Where a pass's instances run: EC2, or the local engine of rehearsals.
pub(crate) trait Fleet {
    /// The instances of `claimed` (id and claim), as one look tells.
    async fn look(&mut self, claimed: &[(&str, &Claim)]) -> Result<HashMap<String, Instance>>;
    /// Instance `id` of `claim` as the fleet tells it when its look did not
    /// show it.
    fn missing(&self, id: &str, claim: &Claim) -> Instance;
    /// The run's status on the instance's console, when the EFS has none.
    async fn console(&mut self, instance: &Instance, claim: &Claim) -> Option<Json>;
    /// Starts the attempt `claim` holds, claimed by this pass.
    async fn start(
        &mut self,
        compiled: &Compiled,
        claims: &Claims,
        claim: Claim,
        on: &mut dyn FnMut(Event),
    ) -> Result<Started>;
    /// Terminates `instances` (each with its job's region).
    async fn terminate(&mut self, instances: &[(Instance, Option<String>)]) -> Vec<Termination>;
}

/// A job of the pass: where its claim is, and the claim as the pass read it.
struct Job {
    claims: Claims,
    claim: Claim,
}

/// One pass over the jobs of `jobs_dir`, their instances in `fleet`; each
/// job compiled from `library` when it must be launched.
pub(crate) async fn pass<F: Fleet>(
    fleet: &mut F,
    library: &Library,
    jobs_dir: &Path,
    options: Options,
    on: &mut dyn FnMut(Event),
) -> Result<Pass> {
    let started = Instant::now();
    let index = Index::of(jobs_dir);
    let live = index.live()?;
    let mut done = Pass::default();
    let mut jobs = Vec::new();
    let mut vanished = Vec::new();
    for entry in &live.jobs {
        let claims = Claims::in_folder(jobs_dir, &entry.job);
        match claims.read() {
            Ok(Some(claim)) => jobs.push(Job { claims, claim }),
            Ok(None) => vanished.push((entry.job.clone(), entry.run)),
            Err(e) => done.problems.push(format!("job {}: {e}", entry.job)),
        }
    }
    done.followed = jobs.len();
    let claimed: Vec<(&str, &Claim)> = jobs
        .iter()
        .filter(|j| !j.claim.ended() && j.claim.queued.is_none())
        .filter_map(|j| Some((j.claim.instance_id.as_deref()?, &j.claim)))
        .collect();
    let seen = if claimed.is_empty() {
        HashMap::new()
    } else {
        fleet.look(&claimed).await?
    };
    let now = now();
    let mut overdue = Vec::new();
    let mut queued = Vec::new();
    for job in &jobs {
        let claim = &job.claim;
        if claim.ended() {
            continue;
        }
        if claim.queued.is_some() {
            queued.push(job);
            continue;
        }
        let Some(id) = claim.instance_id.as_deref() else {
            if let Some(why) = &claim.failed
                && now.saturating_sub(claim.heartbeat) > FAILED_GRACE.as_secs()
            {
                let ended = launch_failed(claim, &job.claims, why);
                record(&job.claims, ended, &mut done);
            } else if claim.failed.is_none() && !claim.holder_alive(now) {
                // Its launcher stopped before an instance was known: take
                // it over with the same tokens (EC2 answers the same
                // instance, if one was started).
                let result = relaunch(fleet, library, job, on, &options, started).await;
                note(result, &mut done);
            }
            continue;
        };
        let instance = seen
            .get(id)
            .cloned()
            .unwrap_or_else(|| fleet.missing(id, claim));
        if instance.state != "terminated" {
            let past_deadline = instance.deadline_epoch().is_some_and(|d| now > d);
            if (past_deadline || instance.state == "stopped") && claim.reaped.is_none() {
                overdue.push((job, instance));
            }
            continue;
        }
        let Some(finished) = finished(fleet, job, &instance, options, now).await? else {
            continue;
        };
        let result = after(
            fleet, library, job, instance, finished, &options, started, on,
        )
        .await;
        match result {
            Ok(Some(ended)) => record(&job.claims, ended, &mut done),
            Ok(None) => {}
            Err(e) => done.problems.push(format!("job {}: {e}", claim.job)),
        }
    }
    terminate_overdue(fleet, overdue, &mut done).await;
    for job in queued {
        if started.elapsed() > options.budget {
            break;
        }
        let result = promote(fleet, library, job, on).await;
        note(result, &mut done);
    }
    // The index as the claims now say.
    let entries: Vec<Entry> = jobs
        .iter()
        .filter_map(|j| j.claims.read().ok().flatten())
        .map(|c| {
            let end = c.end.as_ref().and_then(end_of_report);
            Entry::of(&c, end)
        })
        .collect();
    index.update(|live| {
        live.jobs
            .retain(|e| !vanished.contains(&(e.job.clone(), e.run)));
        for e in entries {
            live.put(e);
        }
    })?;
    for job in &jobs {
        let Ok(Some(claim)) = job.claims.read() else {
            continue;
        };
        if claim.ended() && !claim.reported() {
            match report::recorded(&claim) {
                Ok(r) => done.ended.push(r),
                Err(e) => done.problems.push(e.to_string()),
            }
        }
    }
    index.record_pass(&LastPass {
        at: rfc3339(now),
        at_epoch: now,
        every: options.every.map(|e| e.as_secs().max(1)),
        by: crate::aws::claim::holder(),
        followed: done.followed,
        ended: done.ended.len(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })?;
    Ok(done)
}

/// Adds what `result` says to the pass's account.
fn note(result: Result<Option<String>>, done: &mut Pass) {
    match result {
        Ok(Some(launched)) => done.launched.push(launched),
        Ok(None) => {}
        Err(e) => done.problems.push(e.to_string()),
    }
}

/// Records an end the pass found.
fn record(claims: &Claims, ended: Report, done: &mut Pass) {
    if let Err(e) = report::record_end(claims, ended, false) {
        done.problems.push(e.to_string());
    }
}

/// How the attempt whose instance is gone ended: its status from the EFS,
/// looked for [`Options::status_grace`] after the pass first found it gone,
/// else from its console, else what its StateReason says. `None` while the
/// grace runs.
async fn finished<F: Fleet>(
    fleet: &mut F,
    job: &Job,
    instance: &Instance,
    options: Options,
    now: u64,
) -> Result<Option<Finished>> {
    let claim = &job.claim;
    let mut finished = match read_status(job.claims.dir(), &instance.id) {
        Some(status) => Finished::of(
            "terminated",
            Some(status),
            "efs",
            instance.state_reason.clone(),
        ),
        None => {
            let since = match claim.gone_since {
                Some(since) => since,
                None => {
                    let key = claim.key();
                    job.claims.update(|c| match c.filter(|c| c.key() == key) {
                        Some(mut c) => {
                            c.gone_since = Some(now);
                            (Some(c), ())
                        }
                        None => (None, ()),
                    })?;
                    now
                }
            };
            if now.saturating_sub(since) < options.status_grace.as_secs() {
                return Ok(None);
            }
            let console = fleet.console(instance, claim).await;
            Finished::of(
                "terminated",
                console,
                "console",
                instance.state_reason.clone(),
            )
        }
    };
    finished.terminated_by_bootforge = claim.reaped.as_deref() == Some(instance.id.as_str());
    Ok(Some(finished))
}

/// The request of `claim` that launched `id`, as the plan had it.
fn request_of(claim: &Claim, id: &str) -> Option<RunRequest> {
    claim.request_of(id).map(|r| RunRequest {
        instance_type: r.instance_type.clone(),
        subnet: r.subnet.clone(),
        spot: r.spot,
        client_token: r.client_token.clone(),
        price_per_hour: r.price_per_hour,
    })
}

/// The claim's attempt on `instance`, as a launch that attached to it
/// reports it.
fn attached(claim: &Claim, claims: &Claims, mut instance: Instance) -> Launched {
    let request = request_of(claim, &instance.id);
    if instance.instance_type.is_empty()
        && let Some(r) = &request
    {
        instance.instance_type.clone_from(&r.instance_type);
    }
    let price = catalog::lookup(&instance.instance_type).map(|t| t.price_per_hour);
    Launched {
        launched: false,
        run: claim.run,
        attempt: claim.attempt,
        instance,
        request,
        no_capacity: Vec::new(),
        price_per_hour: price,
        cost_at_timeout: None,
        finished: None,
        claim_shared: claims.shared,
    }
}

/// The job's own profile, compiled with its own `--set` arguments, when it
/// still gives the payload its run was launched with.
fn recompile(library: &Library, claim: &Claim) -> std::result::Result<Compiled, String> {
    let sets: Vec<Override> = claim
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<_>>()
        .map_err(|e| format!("its --set arguments no longer parse ({e})"))?;
    let compiled = compile(library, &claim.profile, &sets)
        .map_err(|e| format!("its profile {} does not compile here ({e})", claim.profile))?;
    if compiled.payload.sha256() != claim.payload_sha256 {
        return Err(format!(
            "its profile {} now compiles another payload than the run was launched with (sha256 {} against {})",
            claim.profile,
            &compiled.payload.sha256()[..12],
            &claim.payload_sha256[..claim.payload_sha256.len().min(12)]
        ));
    }
    Ok(compiled)
}

/// What follows an attempt that ended as `finished`: the next attempt,
/// launched now, or the job's end (returned, to be recorded).
#[allow(clippy::too_many_arguments)]
async fn after<F: Fleet>(
    fleet: &mut F,
    library: &Library,
    job: &Job,
    instance: Instance,
    mut finished: Finished,
    options: &Options,
    started: Instant,
    on: &mut dyn FnMut(Event),
) -> Result<Option<Report>> {
    let claim = &job.claim;
    let policy = claim.retry.clone().or_else(|| {
        // A claim from before claims recorded their policy: the profile's.
        recompile(library, claim)
            .ok()
            .and_then(|c| c.profile.profile.job.retry)
    });
    let now = now();
    let launched = attached(claim, &job.claims, instance);
    let verdict = retry::after(
        policy.as_ref(),
        claim,
        &launched.instance,
        &mut finished,
        now,
    );
    let why = match verdict {
        Verdict::Next(ended) => {
            if started.elapsed() > options.budget {
                return Ok(None);
            }
            match recompile(library, claim) {
                Ok(compiled) => {
                    let (run, attempt) = (claim.run, ended.attempt + 1);
                    if !retry::advance(&job.claims, run, ended, now)? {
                        return Ok(None);
                    }
                    let Some(next) = job.claims.read()? else {
                        return Ok(None);
                    };
                    let what = start(fleet, &compiled, &job.claims, next, on).await?;
                    on(Event::Progress(format!(
                        "job {} run {run}: attempt {attempt} of {}: {what}",
                        claim.job,
                        max_attempts(policy.as_ref())
                    )));
                    return Ok(None);
                }
                Err(reason) => Some(format!(
                    "the retry policy would start attempt {} of {}, but {reason}: not continued (`launch --rerun` starts a new run)",
                    claim.attempt + 1,
                    max_attempts(policy.as_ref())
                )),
            }
        }
        Verdict::End(why) => why,
    };
    let last = retry::ended(claim, &launched.instance, &finished, now);
    let history = retry::attempts(claim, Some(last));
    Ok(Some(report::report(
        claim,
        max_attempts(policy.as_ref()),
        launched,
        Some(finished),
        &job.claims,
        history,
        why,
    )))
}

/// Starts `claim`'s attempt in `fleet`: what it became, for people.
async fn start<F: Fleet>(
    fleet: &mut F,
    compiled: &Compiled,
    claims: &Claims,
    claim: Claim,
    on: &mut dyn FnMut(Event),
) -> Result<String> {
    let key = claim.key();
    Ok(match fleet.start(compiled, claims, claim, on).await? {
        Started::Instance(l) => format!(
            "run {} attempt {} launched on {}",
            key.0, key.1, l.instance.id
        ),
        Started::Queued(c, place) => format!(
            "queued at place {place}: {}",
            c.queued.as_ref().map_or("", |q| q.reason.as_str())
        ),
        Started::Ended(_) => "already ended".to_string(),
    })
}

/// A queued job's turn: launched when a place is free (in the order the
/// jobs came), else left where it is.
async fn promote<F: Fleet>(
    fleet: &mut F,
    library: &Library,
    job: &Job,
    on: &mut dyn FnMut(Event),
) -> Result<Option<String>> {
    let sets: Vec<Override> = job
        .claim
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<_>>()?;
    let compiled = compile(library, &job.claim.profile, &sets).map_err(|e| Error::Environment {
        message: format!(
            "job {} is queued, and its profile {} does not compile here: {e}",
            job.claim.job, job.claim.profile
        ),
        help: Some(
            "give this host the job's profile, or `bootforge terminate --job` it".to_string(),
        ),
    })?;
    match claim_step(&job.claims, &compiled, false, false)? {
        Decision::Launch(claim) => {
            let what = start(fleet, &compiled, &job.claims, claim, on).await?;
            Ok(Some(format!("job {}: {what}", job.claim.job)))
        }
        _ => Ok(None),
    }
}

/// A run whose launcher stopped before an instance was known, taken over.
async fn relaunch<F: Fleet>(
    fleet: &mut F,
    library: &Library,
    job: &Job,
    on: &mut dyn FnMut(Event),
    options: &Options,
    started: Instant,
) -> Result<Option<String>> {
    if started.elapsed() > options.budget {
        return Ok(None);
    }
    let compiled = recompile(library, &job.claim).map_err(|reason| Error::Environment {
        message: format!("job {}: its launcher stopped, and {reason}", job.claim.job),
        help: Some("`bootforge ps` shows whether it started an instance".to_string()),
    })?;
    match claim_step(&job.claims, &compiled, false, false)? {
        Decision::Launch(claim) => {
            let what = start(fleet, &compiled, &job.claims, claim, on).await?;
            Ok(Some(format!("job {} (taken over): {what}", job.claim.job)))
        }
        _ => Ok(None),
    }
}

/// The end of a run whose launch failed before any instance: `launch_failed`.
fn launch_failed(claim: &Claim, claims: &Claims, why: &str) -> Report {
    let mut r = report::without_instance(claim, max_attempts(claim.retry.as_ref()), "", claims);
    r.wait = Some(Finished {
        state: "none".to_string(),
        status: None,
        source: "none".to_string(),
        outcome: "launch_failed".to_string(),
        exit_code: crate::aws::status::exit_code("launch_failed"),
        state_reason: None,
        terminated_by_bootforge: false,
        ended_on_purpose: None,
    });
    r.retry = Some(format!(
        "its launch failed before any instance and was not retried for {} min: {why}",
        FAILED_GRACE.as_secs() / 60
    ));
    r
}

/// Terminates instances past their deadline or stopped instead of
/// terminated, each recorded in its claim first (bootforge ended it: never
/// retried).
async fn terminate_overdue<F: Fleet>(
    fleet: &mut F,
    overdue: Vec<(&Job, Instance)>,
    done: &mut Pass,
) {
    if overdue.is_empty() {
        return;
    }
    for (job, instance) in &overdue {
        let key = job.claim.key();
        let id = instance.id.clone();
        let _ = job.claims.update(|c| match c.filter(|c| c.key() == key) {
            Some(mut c) => {
                c.reaped = Some(id);
                (Some(c), ())
            }
            None => (None, ()),
        });
    }
    let instances: Vec<(Instance, Option<String>)> = overdue
        .iter()
        .map(|(j, i)| (i.clone(), j.claim.region.clone()))
        .collect();
    for t in fleet.terminate(&instances).await {
        match &t.error {
            None => done.terminated.push(format!(
                "{} (job {}): past its deadline or stopped",
                t.instance_id,
                overdue
                    .iter()
                    .find(|(_, i)| i.id == t.instance_id)
                    .map_or("?", |(j, _)| j.claim.job.as_str())
            )),
            Some(e) => done
                .problems
                .push(format!("{} could not be terminated: {e}", t.instance_id)),
        }
    }
}
