//! Launching and following a job's instance under EC2's documented
//! semantics: one job, one instance (through the job's [`crate::claim`]),
//! eventual consistency after RunInstances, a `--wait` that reports this
//! run's true outcome, and the rules of `reap` and `terminate`. Progress goes
//! through a callback: the library never prints.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::Client;
use serde::Serialize;
use serde_json::Value as Json;

use crate::catalog;
use crate::claim::{Claim, ClaimedAttempt, Claims};
use crate::compile::Compiled;
use crate::ec2::{self, AttemptError, Instance};
use crate::error::{Error, Result};
use crate::launch::{Attempt, LaunchPlan};

/// Something worth telling the person waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A line of progress.
    Progress(String),
    /// New text of the job's log (`--follow`).
    Log(String),
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long a new instance may stay unknown to DescribeInstances.
pub const VISIBILITY_BOUND: Duration = Duration::from_secs(120);
/// How long a launch waits for another launch of the same job that holds
/// its claim and is still starting the instance.
pub const ATTACH_BOUND: Duration = Duration::from_secs(600);

/// What `launch` did.
#[derive(Debug, Clone, Serialize)]
pub struct Launched {
    /// True when this launch started the instance; false when it attached
    /// to the run another launch of the job started.
    pub launched: bool,
    /// The run of the job (1 for the first; `--rerun` makes the next).
    pub run: u32,
    pub instance: Instance,
    pub attempt: Option<Attempt>,
    /// Attempts that found no capacity, in order.
    pub no_capacity: Vec<String>,
    pub price_per_hour: Option<f64>,
    pub cost_at_timeout: Option<f64>,
    /// When the run had already ended: its outcome, as `--wait` tells it.
    pub finished: Option<Finished>,
    /// Whether the claim is on the directory the launching hosts share
    /// (false: on this host only).
    pub claim_shared: bool,
}

/// What a launch does about the job's claim as it finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// This launch holds the run: it sends the run's attempts.
    Launch(Claim),
    /// The run has its instance: follow it.
    Attach(Claim),
    /// Another launch is starting the run: wait for its instance.
    Wait(Claim),
    /// Nothing to do but say why.
    Refuse(String),
}

/// The rules of the claim, as a pure function of what is there. `ended`
/// says whether the claimed run's instance has terminated (asked of EC2
/// beforehand, for `--rerun`).
pub fn decide(
    current: Option<&Claim>,
    profile: &str,
    job: &str,
    payload_sha256: &str,
    rerun: bool,
    ended: bool,
    now: u64,
) -> Decision {
    let fresh = |run| Claim::new(profile, job, run, payload_sha256, now);
    let Some(c) = current else {
        return Decision::Launch(fresh(1));
    };
    if c.profile != profile {
        return Decision::Refuse(format!(
            "job {job} belongs to profile {} (run {}); a job id names one job: give this one another id",
            c.profile, c.run
        ));
    }
    let launching_now = c.instance_id.is_none() && c.failed.is_none() && c.holder_alive(now);
    let unresolved = c.attempts.iter().any(|a| a.result.is_none());
    if rerun {
        return match (&c.instance_id, ended) {
            (Some(id), false) => Decision::Refuse(format!(
                "run {} of job {job} still runs on {id}: a rerun would be a second GPU for one job; wait for it, or `bootforge terminate --job {job}` first",
                c.run
            )),
            (None, _) if launching_now && !c.mine() => Decision::Refuse(format!(
                "run {} of job {job} is being launched right now by {}; wait for it",
                c.run, c.holder
            )),
            _ => Decision::Launch(fresh(c.run + 1)),
        };
    }
    if c.instance_id.is_some() {
        return Decision::Attach(c.clone());
    }
    if launching_now && !c.mine() {
        return Decision::Wait(c.clone());
    }
    if c.payload_sha256 != payload_sha256 {
        // Its attempts used other tokens: one still unanswered may have
        // started an instance nobody recorded.
        if unresolved && c.failed.is_none() {
            return Decision::Refuse(format!(
                "run {} of job {job} was being launched with another payload when its launcher ({}) stopped, and may have started an instance: look with `bootforge ps`, then `launch --rerun`",
                c.run, c.holder
            ));
        }
        return Decision::Launch(fresh(c.run + 1));
    }
    // The run failed before an instance (capacity, quota…), or its holder
    // stopped: take it over, with the same tokens.
    let mut taken = c.clone();
    taken.holder = crate::claim::holder();
    taken.heartbeat = now;
    taken.failed = None;
    Decision::Launch(taken)
}

/// Launches `compiled`'s job, or attaches to the run another launch of it
/// started (in this process, another, or on another host sharing the job's
/// directory); reports a run that has already ended.
pub async fn launch(
    client: &Client,
    compiled: &Compiled,
    claims: &Claims,
    rerun: bool,
    intervals: Intervals,
    on: &mut dyn FnMut(Event),
) -> Result<Launched> {
    let profile = compiled.profile.name.clone();
    let job = compiled.profile.profile.job.id.clone();
    let payload = compiled.payload.sha256();
    let start = Instant::now();
    loop {
        // For --rerun: whether the claimed run's instance has ended.
        let ended = match claims.read()?.and_then(|c| c.instance_id) {
            Some(id) if rerun => visible(client, &id, on)
                .await?
                .is_none_or(|i| i.state == "terminated"),
            _ => false,
        };
        let decision = claims.update(|current| {
            let d = decide(
                current.as_ref(),
                &profile,
                &job,
                &payload,
                rerun,
                ended,
                now(),
            );
            match &d {
                Decision::Launch(c) => (Some(c.clone()), d),
                _ => (None, d),
            }
        })?;
        match decision {
            Decision::Launch(claim) => {
                return launch_run(client, compiled, claims, claim, intervals, on).await;
            }
            Decision::Attach(claim) => {
                return attach(client, compiled, claims, claim, intervals, on).await;
            }
            Decision::Refuse(message) => return Err(Error::Usage { message }),
            Decision::Wait(claim) => {
                if start.elapsed() > ATTACH_BOUND {
                    return Err(Error::Environment {
                        message: format!(
                            "run {} of job {job} has been starting for {}s under {} without an instance",
                            claim.run,
                            start.elapsed().as_secs(),
                            claim.holder
                        ),
                        help: Some(format!(
                            "see {}",
                            claims.dir().join(crate::claim::CLAIM_FILE).display()
                        )),
                    });
                }
                on(Event::Progress(format!(
                    "run {} of job {job} is being launched by {}: waiting for its instance",
                    claim.run, claim.holder
                )));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Records `result` for the attempt with `token`, adding it when new; and
/// refreshes the holder's heartbeat.
fn record(claims: &Claims, run: u32, attempt: &Attempt, result: Option<String>) -> Result<()> {
    claims.update(|c| {
        let Some(mut c) = c.filter(|c| c.run == run) else {
            return (None, ());
        };
        c.heartbeat = now();
        match c
            .attempts
            .iter_mut()
            .find(|a| a.client_token == attempt.client_token)
        {
            Some(a) => a.result = result,
            None => c.attempts.push(ClaimedAttempt {
                client_token: attempt.client_token.clone(),
                instance_type: attempt.instance_type.clone(),
                subnet: attempt.subnet.clone(),
                spot: attempt.spot,
                result,
            }),
        }
        (Some(c), ())
    })
}

fn settle(claims: &Claims, run: u32, instance: Option<&str>, failed: Option<String>) -> Result<()> {
    claims.update(|c| match c.filter(|c| c.run == run) {
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

/// Sends the run's attempts in order, each recorded before it is sent.
async fn launch_run(
    client: &Client,
    compiled: &Compiled,
    claims: &Claims,
    claim: Claim,
    intervals: Intervals,
    on: &mut dyn FnMut(Event),
) -> Result<Launched> {
    let plan = crate::launch::plan(compiled, &claim)?;
    on(Event::Progress(format!(
        "job {} run {}: launching (claim in {})",
        plan.job,
        plan.run,
        claims.dir().display()
    )));
    // The holder says it is alive while the SDK retries and waits.
    let beat = {
        let claims = claims.clone();
        let run = plan.run;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = claims.update(|c| match c.filter(|c| c.run == run && c.mine()) {
                    Some(mut c) => {
                        c.heartbeat = now();
                        (Some(c), ())
                    }
                    None => (None, ()),
                });
            }
        })
    };
    let result = send_attempts(client, &plan, claims, on).await;
    beat.abort();
    let (id, attempt, no_capacity) = match result {
        Ok(Sent::Launched(id, attempt, no_capacity)) => (id, Some(attempt), no_capacity),
        Ok(Sent::Ended) => {
            // A token of this run launched an instance that has terminated
            // since: the run is over. Its id, from its tags.
            let found = find_run_instance(client, &plan.job, plan.run, on).await?;
            settle(claims, plan.run, found.as_deref(), None)?;
            let Some(id) = found else {
                return Err(Error::Environment {
                    message: format!(
                        "run {} of job {} has ended, and EC2 does not show its instance yet",
                        plan.run, plan.job
                    ),
                    help: Some(
                        "retry in a minute: the launch will report the run's outcome".to_string(),
                    ),
                });
            };
            let instance = visible(client, &id, on)
                .await?
                .ok_or_else(|| not_visible(&id))?;
            let finished = report(client, &instance, claims.dir(), intervals, on).await?;
            return Ok(launched(
                false,
                plan.run,
                instance,
                None,
                Vec::new(),
                plan.budget_seconds,
                Some(finished),
                claims,
            ));
        }
        Err(e) => return Err(e),
    };
    let instance = match visible(client, &id, on).await? {
        Some(i) => i,
        None => {
            // EC2 said it launched: report that id, whatever Describe says.
            on(Event::Progress(format!(
                "{id} is not visible yet after {}s: reporting it as RunInstances returned it",
                VISIBILITY_BOUND.as_secs()
            )));
            pending(&id, &plan)
        }
    };
    Ok(launched(
        true,
        plan.run,
        instance,
        attempt,
        no_capacity,
        plan.budget_seconds,
        None,
        claims,
    ))
}

#[allow(clippy::too_many_arguments)]
fn launched(
    launched: bool,
    run: u32,
    instance: Instance,
    attempt: Option<Attempt>,
    no_capacity: Vec<String>,
    budget_seconds: u64,
    finished: Option<Finished>,
    claims: &Claims,
) -> Launched {
    let price = catalog::lookup(&instance.instance_type).map(|t| t.price_per_hour);
    Launched {
        launched,
        run,
        cost_at_timeout: price.map(|p| catalog::job_cost(p, budget_seconds)),
        price_per_hour: price,
        instance,
        attempt,
        no_capacity,
        finished,
        claim_shared: claims.shared,
    }
}

/// An instance RunInstances returned that Describe does not show yet.
fn pending(id: &str, plan: &LaunchPlan) -> Instance {
    Instance {
        id: id.to_string(),
        state: "pending".to_string(),
        instance_type: String::new(),
        subnet: None,
        private_ip: None,
        launched: None,
        profile: Some(plan.profile.clone()),
        job: Some(plan.job.clone()),
        run: Some(plan.run.to_string()),
        deadline: Some(plan.deadline.clone()),
        state_reason: None,
    }
}

fn not_visible(id: &str) -> Error {
    Error::Environment {
        message: format!(
            "EC2 does not show {id} after {}s",
            VISIBILITY_BOUND.as_secs()
        ),
        help: Some("retry in a minute; the job's claim keeps its run".to_string()),
    }
}

enum Sent {
    Launched(String, Attempt, Vec<String>),
    /// The run's instance has already terminated.
    Ended,
}

async fn send_attempts(
    client: &Client,
    plan: &LaunchPlan,
    claims: &Claims,
    on: &mut dyn FnMut(Event),
) -> Result<Sent> {
    let mut no_capacity = Vec::new();
    for attempt in &plan.attempts {
        let market = if attempt.spot { "spot" } else { "on-demand" };
        record(claims, plan.run, attempt, None)?;
        on(Event::Progress(format!(
            "launching {} {market} in {}",
            attempt.instance_type, attempt.subnet
        )));
        match ec2::launch(client, plan, attempt).await {
            Ok(id) => {
                record(claims, plan.run, attempt, Some(format!("launched {id}")))?;
                settle(claims, plan.run, Some(&id), None)?;
                return Ok(Sent::Launched(id, attempt.clone(), no_capacity));
            }
            Err(AttemptError::Capacity(why)) => {
                on(Event::Progress(format!(
                    "  no capacity: {why}; trying the next"
                )));
                record(claims, plan.run, attempt, Some(why.clone()))?;
                no_capacity.push(format!(
                    "{} {market} in {}: {why}",
                    attempt.instance_type, attempt.subnet
                ));
            }
            Err(AttemptError::InstanceTerminated) => {
                record(
                    claims,
                    plan.run,
                    attempt,
                    Some("IdempotentInstanceTerminated".to_string()),
                )?;
                return Ok(Sent::Ended);
            }
            Err(AttemptError::Quota(e)) | Err(AttemptError::Fatal(e)) => {
                record(claims, plan.run, attempt, Some(e.to_string()))?;
                settle(claims, plan.run, None, Some(e.to_string()))?;
                return Err(e);
            }
        }
    }
    let message = format!(
        "no capacity for any type and subnet of the profile ({})",
        no_capacity.join("; ")
    );
    settle(claims, plan.run, None, Some(message.clone()))?;
    Err(Error::Aws {
        operation: "RunInstances",
        code: "InsufficientInstanceCapacity".to_string(),
        message,
        help: Some("add subnets in other availability zones or more instance types to the profile, or retry later".to_string()),
    })
}

/// The instance of the job's run, found by its tags (which lag too).
async fn find_run_instance(
    client: &Client,
    job: &str,
    run: u32,
    on: &mut dyn FnMut(Event),
) -> Result<Option<String>> {
    let start = Instant::now();
    loop {
        if let Some(i) = ec2::find_run(client, job, run).await?.into_iter().next() {
            return Ok(Some(i.id));
        }
        if start.elapsed() > VISIBILITY_BOUND {
            return Ok(None);
        }
        on(Event::Progress(format!(
            "looking for run {run} of job {job} by its tags"
        )));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `id` as DescribeInstances shows it, waiting (bounded) while EC2 does
/// not know it yet, and while it is pending.
async fn visible(client: &Client, id: &str, on: &mut dyn FnMut(Event)) -> Result<Option<Instance>> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match ec2::get(client, id).await {
            Ok(Some(i)) if i.state != "pending" => return Ok(Some(i)),
            Ok(Some(i)) => on(Event::Progress(format!(
                "{} {} ({}s)",
                i.id,
                i.state,
                start.elapsed().as_secs()
            ))),
            Ok(None) => on(Event::Progress(format!(
                "{id} not visible yet ({}s)",
                start.elapsed().as_secs()
            ))),
            Err(e) if ec2::transient(&e) && start.elapsed() < VISIBILITY_BOUND => {
                on(Event::Progress(format!(
                    "DescribeInstances failed ({e}); retrying"
                )));
            }
            Err(e) => return Err(e),
        }
        if start.elapsed() > VISIBILITY_BOUND {
            return ec2::get(client, id).await;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Attaches to the run another launch started.
async fn attach(
    client: &Client,
    compiled: &Compiled,
    claims: &Claims,
    claim: Claim,
    intervals: Intervals,
    on: &mut dyn FnMut(Event),
) -> Result<Launched> {
    let id = claim.instance_id.clone().unwrap_or_default();
    on(Event::Progress(format!(
        "job {} run {} already has instance {id}: not launching another",
        claim.job, claim.run
    )));
    let budget = compiled.profile.profile.job.timeout.seconds()
        + compiled.profile.profile.job.grace.seconds();
    let instance = visible(client, &id, on)
        .await?
        .ok_or_else(|| not_visible(&id))?;
    let finished = if instance.state == "terminated" {
        Some(report(client, &instance, claims.dir(), intervals, on).await?)
    } else {
        None
    };
    Ok(launched(
        false,
        claim.run,
        instance,
        None,
        Vec::new(),
        budget,
        finished,
        claims,
    ))
}

/// How a waited-for job ended.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub state: String,
    /// The run's `status.json`, when it wrote one.
    pub status: Option<Json>,
    /// Where the status came from: `efs`, `console`, or `none`.
    pub source: &'static str,
    /// The job's outcome, or the instance's own (`interrupted`,
    /// `launch_failed`, `no_status`).
    pub outcome: String,
    /// See [`exit_code`].
    pub exit_code: i32,
    /// Why EC2 ended the instance, when it says.
    pub state_reason: Option<ec2::StateReason>,
    /// Whether bootforge had to terminate the instance itself (it outlived
    /// its deadline, or stopped instead of terminating).
    pub terminated_by_bootforge: bool,
}

/// The exit code of `launch --wait` for an outcome: 0 succeeded, 1 the job
/// ended otherwise, 3 no status was ever written, 4 the instance was
/// interrupted (spot), 5 it failed to launch.
pub fn exit_code(outcome: &str) -> i32 {
    match outcome {
        "succeeded" => 0,
        "no_status" => NO_STATUS,
        "interrupted" => 4,
        "launch_failed" => 5,
        _ => 1,
    }
}

/// The exit code of `launch --wait` when the job wrote no status at all.
pub const NO_STATUS: i32 = 3;

/// What an instance that died without a status tells by its StateReason.
pub fn outcome_of_reason(reason: Option<&ec2::StateReason>) -> &'static str {
    match reason.map(|r| r.code.as_str()) {
        Some("Server.SpotInstanceTermination" | "Server.SpotInstanceShutdown") => "interrupted",
        Some(
            "Server.InsufficientInstanceCapacity"
            | "Server.InternalError"
            | "Client.InternalError"
            | "Client.VolumeLimitExceeded"
            | "Client.InvalidSnapshot.NotFound",
        ) => "launch_failed",
        _ => "no_status",
    }
}

/// The status of instance `id` in `job_dir`, if the file there is its own.
pub fn read_status(job_dir: &Path, id: &str) -> Option<Json> {
    std::fs::read_to_string(job_dir.join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Json>(&t).ok())
        .filter(|s| s["instance_id"] == id)
}

/// The last `bootforge-status:` line of a console output that is `id`'s.
pub fn console_status(console: &str, id: &str) -> Option<Json> {
    console
        .lines()
        .rev()
        .filter_map(|l| l.split_once("bootforge-status: ").map(|(_, s)| s))
        .filter_map(|s| serde_json::from_str::<Json>(s.trim()).ok())
        .find(|s| s["instance_id"] == id)
}

/// The outcome of a terminated instance: its status from the EFS (read for a
/// while: the host's NFS client may lag), else from its console, else what
/// its StateReason says.
async fn report(
    client: &Client,
    instance: &Instance,
    job_dir: &Path,
    intervals: Intervals,
    on: &mut dyn FnMut(Event),
) -> Result<Finished> {
    let start = Instant::now();
    let mut status = read_status(job_dir, &instance.id);
    while status.is_none() && start.elapsed() < intervals.status_grace {
        tokio::time::sleep(intervals.status).await;
        status = read_status(job_dir, &instance.id);
    }
    let mut source = "efs";
    if status.is_none() {
        on(Event::Progress(format!(
            "no status of {} in {}: reading its console",
            instance.id,
            job_dir.display()
        )));
        source = "console";
        status = match ec2::console_output(client, &instance.id).await {
            Ok(text) => console_status(&text, &instance.id),
            Err(e) => {
                on(Event::Progress(format!("cannot read the console: {e}")));
                None
            }
        };
    }
    let (outcome, source) = match status.as_ref().and_then(|s| s["outcome"].as_str()) {
        Some(o) => (o.to_string(), source),
        None => (
            outcome_of_reason(instance.state_reason.as_ref()).to_string(),
            "none",
        ),
    };
    Ok(Finished {
        state: instance.state.clone(),
        exit_code: exit_code(&outcome),
        outcome,
        source,
        status,
        state_reason: instance.state_reason.clone(),
        terminated_by_bootforge: false,
    })
}

/// How long DescribeInstances may fail in a row before `--wait` gives up.
pub const DESCRIBE_ERRORS_BOUND: Duration = Duration::from_secs(300);

struct Follow {
    path: PathBuf,
    offset: u64,
}

impl Follow {
    fn poll(&mut self, on: &mut dyn FnMut(Event)) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut text = Vec::new();
        if let Ok(n) = file.read_to_end(&mut text)
            && n > 0
        {
            self.offset += n as u64;
            on(Event::Log(String::from_utf8_lossy(&text).into_owned()));
        }
    }
}

/// How often `--wait` looks: at the status file (cheap, on the EFS), and at
/// EC2 (rate-limited for the whole account: a hundred waiters at 30 s make
/// 3.3 calls a second).
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub status: Duration,
    pub ec2: Duration,
    /// How long the status is looked for after the instance terminated (the
    /// launching host's NFS client may show a new file late).
    pub status_grace: Duration,
}

/// A spread of `0..period` for this process, so that waiters started
/// together do not call EC2 together.
fn jitter(period: Duration) -> Duration {
    let seed = u64::from(std::process::id())
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        ));
    Duration::from_millis(seed % (period.as_millis().max(1) as u64))
}

/// Follows `instance` until it is terminated, then reports the outcome of
/// this run (see [`report`]). The status file in `job_dir` is watched often,
/// EC2 rarely; DescribeInstances errors are retried with backoff for
/// [`DESCRIBE_ERRORS_BOUND`]. Past the instance's own deadline (its tag), or
/// stopped instead of terminated, the instance is terminated.
pub async fn wait(
    client: &Client,
    instance: &Instance,
    job_dir: &Path,
    intervals: Intervals,
    follow: bool,
    on: &mut dyn FnMut(Event),
) -> Result<Finished> {
    let id = instance.id.clone();
    let deadline = instance.deadline_epoch();
    let start = Instant::now();
    let mut follow = follow.then(|| Follow {
        path: job_dir.join("job.log"),
        offset: 0,
    });
    let mut last = instance.state.clone();
    let mut current = instance.clone();
    let mut terminated_by_bootforge = false;
    let mut next_ec2 = Instant::now() + jitter(intervals.ec2);
    let mut errors_since: Option<Instant> = None;
    let mut backoff = intervals.status;
    let mut status_seen = false;
    loop {
        if let Some(f) = follow.as_mut() {
            f.poll(on);
        }
        if !status_seen && read_status(job_dir, &id).is_some() {
            status_seen = true;
            on(Event::Progress(format!(
                "{id} wrote its status; waiting for it to power off"
            )));
            next_ec2 = Instant::now();
        }
        if Instant::now() >= next_ec2 {
            match ec2::get(client, &id).await {
                Ok(found) => {
                    errors_since = None;
                    backoff = intervals.status;
                    // Unknown to EC2 long after launch: gone.
                    match found {
                        Some(i) => current = i,
                        None if start.elapsed() > VISIBILITY_BOUND => {
                            current.state = "terminated".to_string()
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    let since = *errors_since.get_or_insert_with(Instant::now);
                    if !ec2::transient(&e) || since.elapsed() > DESCRIBE_ERRORS_BOUND {
                        return Err(e);
                    }
                    on(Event::Progress(format!(
                        "DescribeInstances failed ({e}); retrying in {}s",
                        backoff.as_secs_f64()
                    )));
                    next_ec2 = Instant::now() + backoff;
                    backoff = (backoff * 2).min(intervals.ec2.max(Duration::from_secs(1)));
                    tokio::time::sleep(intervals.status).await;
                    continue;
                }
            }
            // Once the job said it ended, the power-off is near: look sooner.
            next_ec2 = Instant::now()
                + if status_seen {
                    intervals.ec2.min(Duration::from_secs(10))
                } else {
                    intervals.ec2
                };
            if current.state != last {
                on(Event::Progress(format!(
                    "{id} {} ({}s)",
                    current.state,
                    start.elapsed().as_secs()
                )));
                last.clone_from(&current.state);
            }
            match current.state.as_str() {
                "terminated" => break,
                "stopped" if !terminated_by_bootforge => {
                    on(Event::Progress(format!(
                        "{id} stopped instead of terminating: terminating it"
                    )));
                    ec2::terminate(client, std::slice::from_ref(&id)).await?;
                    terminated_by_bootforge = true;
                }
                _ if deadline.is_some_and(|d| now() > d) && !terminated_by_bootforge => {
                    on(Event::Progress(format!(
                        "{id} is past its deadline: terminating it"
                    )));
                    ec2::terminate(client, std::slice::from_ref(&id)).await?;
                    terminated_by_bootforge = true;
                }
                _ => {}
            }
        }
        tokio::time::sleep(intervals.status).await;
    }
    if let Some(f) = follow.as_mut() {
        f.poll(on);
    }
    let mut finished = report(client, &current, job_dir, intervals, on).await?;
    finished.terminated_by_bootforge = terminated_by_bootforge;
    Ok(finished)
}

/// Past this many seconds after launch, an instance without a readable
/// deadline tag is reaped: the largest budget bootforge lets a job have
/// (48 h of timeout, 2 h of grace) and the margin for boot and power-off.
pub const UNKNOWN_DEADLINE_SECONDS: u64 = 50 * 3600 + crate::launch::DEADLINE_MARGIN_SECONDS;

/// Why `reap` ends an instance.
#[derive(Debug, Clone, Serialize)]
pub struct Expired {
    pub instance: Instance,
    /// The deadline it is past (seconds since the epoch).
    pub deadline: u64,
    /// Whether the deadline is its tag's, or its launch time plus the
    /// largest budget (the tag is missing or unreadable).
    pub from_tag: bool,
}

/// The instances `reap` ends: bootforge's (they carry its job tag), live,
/// past their deadline.
pub fn expired(instances: &[Instance], now: u64) -> Vec<Expired> {
    instances
        .iter()
        .filter(|i| i.job.is_some() && !matches!(i.state.as_str(), "shutting-down" | "terminated"))
        .filter_map(|i| {
            let (deadline, from_tag) = match i.deadline_epoch() {
                Some(d) => (d, true),
                None => (i.launched? + UNKNOWN_DEADLINE_SECONDS, false),
            };
            (deadline < now).then(|| Expired {
                instance: i.clone(),
                deadline,
                from_tag,
            })
        })
        .collect()
}

/// What terminating one instance did.
#[derive(Debug, Clone, Serialize)]
pub struct Termination {
    pub instance_id: String,
    pub profile: Option<String>,
    pub terminated: bool,
    /// Why not, when EC2 refused.
    pub error: Option<String>,
}

/// Terminates `instances`, one TerminateInstances call per profile (each
/// allowed by that profile's policy): a refusal fails that profile's
/// instances, never the others'.
pub async fn terminate_by_profile(client: &Client, instances: &[Instance]) -> Vec<Termination> {
    let mut groups: BTreeMap<Option<String>, Vec<&Instance>> = BTreeMap::new();
    for i in instances {
        groups.entry(i.profile.clone()).or_default().push(i);
    }
    let mut done = Vec::new();
    for (profile, group) in groups {
        let ids: Vec<String> = group.iter().map(|i| i.id.clone()).collect();
        let result = ec2::terminate(client, &ids).await;
        for id in ids {
            done.push(Termination {
                instance_id: id,
                profile: profile.clone(),
                terminated: result.is_ok(),
                error: result.as_ref().err().map(ToString::to_string),
            });
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_exit_codes() {
        assert_eq!(exit_code("succeeded"), 0);
        for o in [
            "failed",
            "timed_out",
            "mount_failed",
            "deps_failed",
            "gpu_missing",
        ] {
            assert_eq!(exit_code(o), 1, "{o}");
        }
        assert_eq!(exit_code("no_status"), NO_STATUS);
        assert_eq!(exit_code("interrupted"), 4);
        assert_eq!(exit_code("launch_failed"), 5);
    }

    fn reason(code: &str) -> ec2::StateReason {
        ec2::StateReason {
            code: code.to_string(),
            message: String::new(),
        }
    }

    #[test]
    fn state_reasons_tell_why_an_instance_died() {
        assert_eq!(
            outcome_of_reason(Some(&reason("Server.SpotInstanceTermination"))),
            "interrupted"
        );
        assert_eq!(
            outcome_of_reason(Some(&reason("Server.InsufficientInstanceCapacity"))),
            "launch_failed"
        );
        assert_eq!(
            outcome_of_reason(Some(&reason("Client.InstanceInitiatedShutdown"))),
            "no_status"
        );
        assert_eq!(outcome_of_reason(None), "no_status");
    }

    #[test]
    fn only_this_instances_status_counts() {
        let console = "boot\nbootforge-status: {\"instance_id\": \"i-1\", \"outcome\": \"failed\"}\nmore\nbootforge-status: {\"instance_id\": \"i-2\", \"outcome\": \"succeeded\"}\n";
        assert_eq!(console_status(console, "i-1").unwrap()["outcome"], "failed");
        assert_eq!(
            console_status(console, "i-2").unwrap()["outcome"],
            "succeeded"
        );
        assert!(console_status(console, "i-3").is_none());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("status.json"),
            r#"{"instance_id": "i-old", "outcome": "succeeded"}"#,
        )
        .unwrap();
        assert!(
            read_status(dir.path(), "i-new").is_none(),
            "an earlier run's status is not this run's"
        );
        assert!(read_status(dir.path(), "i-old").is_some());
    }

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
    fn the_claim_decides_launch_attach_wait_or_refuse() {
        let d = |c: Option<&Claim>, rerun: bool, ended: bool| {
            decide(c, "p", "j", "sha", rerun, ended, 1_010)
        };
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
        // Another profile's job of the same id.
        assert!(matches!(
            decide(Some(&running), "q", "j", "sha", false, false, 1_010),
            Decision::Refuse(_)
        ));
        // Another payload while an attempt is unanswered: refuse.
        let mut unsure = claim(1, None, false, false);
        unsure.attempts.push(ClaimedAttempt {
            client_token: "t".to_string(),
            instance_type: "g6e.xlarge".to_string(),
            subnet: "s".to_string(),
            spot: false,
            result: None,
        });
        assert!(matches!(
            decide(Some(&unsure), "p", "j", "other", false, false, 1_010),
            Decision::Refuse(_)
        ));
    }

    fn instance(
        id: &str,
        job: Option<&str>,
        deadline: Option<&str>,
        launched: u64,
        state: &str,
    ) -> Instance {
        Instance {
            id: id.to_string(),
            state: state.to_string(),
            instance_type: "g6e.xlarge".to_string(),
            subnet: None,
            private_ip: None,
            launched: Some(launched),
            profile: Some("p".to_string()),
            job: job.map(str::to_string),
            run: None,
            deadline: deadline.map(str::to_string),
            state_reason: None,
        }
    }

    #[test]
    fn reap_takes_only_bootforges_instances_past_their_deadline() {
        let now = 2_000_000_000;
        let list = [
            instance(
                "i-past",
                Some("a"),
                Some("2001-01-01T00:00:00Z"),
                0,
                "running",
            ),
            instance(
                "i-future",
                Some("b"),
                Some("2100-01-01T00:00:00Z"),
                0,
                "running",
            ),
            instance(
                "i-stranger",
                None,
                Some("2001-01-01T00:00:00Z"),
                0,
                "running",
            ),
            instance(
                "i-garbled-old",
                Some("c"),
                Some("soon"),
                now - UNKNOWN_DEADLINE_SECONDS - 1,
                "running",
            ),
            instance("i-garbled-new", Some("d"), None, now - 3600, "running"),
            instance(
                "i-going",
                Some("e"),
                Some("2001-01-01T00:00:00Z"),
                0,
                "shutting-down",
            ),
        ];
        let ids: Vec<String> = expired(&list, now)
            .into_iter()
            .map(|e| e.instance.id)
            .collect();
        assert_eq!(ids, ["i-past", "i-garbled-old"]);
    }
}
