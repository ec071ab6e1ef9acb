//! Launching a job's instance under EC2's documented semantics: one job,
//! one instance (through the job's [`crate::aws::claim`]), fallback
//! attempts each with its token, eventual consistency after RunInstances,
//! attaching to a run another host started. Progress goes through a
//! callback: the library never prints.
//!
//! About 540 lines of code: the launch is one state machine (decide, send
//! the attempts, see the instance, attach), read best in one place; waiting
//! is in `wait`, cleaning up in `reap`.

use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use serde::Serialize;

use crate::aws::claim::{Claim, ClaimedRequest, Claims};
use crate::aws::ec2::{self, Instance, RequestError, VISIBILITY_BOUND};
use crate::aws::plan::{LaunchPlan, RunRequest};
use crate::aws::wait::{Finished, Intervals, report};
use crate::check::catalog;
use crate::clock::now;
use crate::compile::Compiled;
use crate::diagnostics::{Error, Result};
pub use crate::progress::Event;

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
    /// The run's attempt (1 for the first; a retry policy makes the next).
    pub attempt: u32,
    pub instance: Instance,
    pub request: Option<RunRequest>,
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
    let unresolved = c.requests.iter().any(|a| a.result.is_none());
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
    taken.holder = crate::aws::claim::holder();
    taken.heartbeat = now;
    taken.failed = None;
    Decision::Launch(taken)
}

/// The decision for `compiled`'s job, taken under the claim's lock: a launch
/// is written into the claim as it is decided, so that one launch of a job
/// wins. `ended`: whether the claimed run's instance has ended (for
/// `--rerun`).
pub fn claim_step(
    claims: &Claims,
    compiled: &Compiled,
    rerun: bool,
    ended: bool,
) -> Result<Decision> {
    let profile = &compiled.profile.name;
    let job = &compiled.profile.profile.job.id;
    let payload = compiled.payload.sha256();
    claims.update(|current| {
        let d = decide(
            current.as_ref(),
            profile,
            job,
            &payload,
            rerun,
            ended,
            now(),
        );
        match &d {
            Decision::Launch(c) => (Some(c.clone()), d),
            _ => (None, d),
        }
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
    let job = compiled.profile.profile.job.id.clone();
    let start = Instant::now();
    loop {
        // For --rerun: whether the claimed run's instance has ended.
        let ended = match claims.read()?.and_then(|c| c.instance_id) {
            Some(id) if rerun => visible(client, &id, on)
                .await?
                .is_none_or(|i| i.state == "terminated"),
            _ => false,
        };
        match claim_step(claims, compiled, rerun, ended)? {
            Decision::Launch(claim) => {
                return launch_run(client, compiled, claims, claim, intervals, on).await;
            }
            Decision::Attach(claim) => {
                return attach(client, compiled, claims, claim, intervals, on).await;
            }
            Decision::Refuse(message) => return Err(Error::Usage { message }),
            Decision::Wait(claim) => {
                still_starting(claims, &claim, start)?;
                on(Event::Progress(format!(
                    "run {} of job {job} is being launched by {}: waiting for its instance",
                    claim.run, claim.holder
                )));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Records `result` for the request with `token`, adding it when new; and
/// refreshes the holder's heartbeat.
fn record(
    claims: &Claims,
    key: (u32, u32),
    request: &RunRequest,
    result: Option<String>,
) -> Result<()> {
    claims.update(|c| {
        let Some(mut c) = c.filter(|c| c.key() == key) else {
            return (None, ());
        };
        c.heartbeat = now();
        match c
            .requests
            .iter_mut()
            .find(|a| a.client_token == request.client_token)
        {
            Some(a) => a.result = result,
            None => c.requests.push(ClaimedRequest {
                client_token: request.client_token.clone(),
                instance_type: request.instance_type.clone(),
                subnet: request.subnet.clone(),
                spot: request.spot,
                result,
                price_per_hour: request.price_per_hour,
            }),
        }
        (Some(c), ())
    })
}

/// Records how attempt `key` (run, attempt) of the claim stands: its
/// instance once known, or why it has none.
pub(crate) fn settle(
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

/// Sends the run's attempts in order, each recorded before it is sent.
async fn launch_run(
    client: &Client,
    compiled: &Compiled,
    claims: &Claims,
    claim: Claim,
    intervals: Intervals,
    on: &mut dyn FnMut(Event),
) -> Result<Launched> {
    let plan = crate::aws::plan::plan(compiled, &claim)?;
    on(Event::Progress(format!(
        "job {} run {}: launching (claim in {})",
        plan.job,
        plan.run,
        claims.dir().display()
    )));
    // The holder says it is alive while the SDK retries and waits.
    let beat = {
        let claims = claims.clone();
        let key = plan.key();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = claims.update(|c| match c.filter(|c| c.key() == key && c.mine()) {
                    Some(mut c) => {
                        c.heartbeat = now();
                        (Some(c), ())
                    }
                    None => (None, ()),
                });
            }
        })
    };
    let result = send_requests(client, &plan, claims, on).await;
    beat.abort();
    let (id, request, no_capacity) = match result {
        Ok(Sent::Launched(id, request, no_capacity)) => (id, Some(request), no_capacity),
        Ok(Sent::Ended(request)) => {
            // The token of `request` launched an instance that has
            // terminated since: the attempt is over. Its id, from its tags;
            // the claim records that this request launched it (its market
            // and price are the attempt's).
            let found = find_run_instance(client, &plan.job, plan.key(), on).await?;
            if let Some(id) = &found {
                record(claims, plan.key(), &request, Some(format!("launched {id}")))?;
            }
            settle(claims, plan.key(), found.as_deref(), None)?;
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
                plan.key(),
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
        plan.key(),
        instance,
        request,
        no_capacity,
        plan.budget_seconds,
        None,
        claims,
    ))
}

#[allow(clippy::too_many_arguments)]
fn launched(
    launched: bool,
    (run, attempt): (u32, u32),
    instance: Instance,
    request: Option<RunRequest>,
    no_capacity: Vec<String>,
    budget_seconds: u64,
    finished: Option<Finished>,
    claims: &Claims,
) -> Launched {
    let price = catalog::lookup(&instance.instance_type).map(|t| t.price_per_hour);
    Launched {
        launched,
        run,
        attempt,
        cost_at_timeout: price.map(|p| catalog::job_cost(p, budget_seconds)),
        price_per_hour: price,
        instance,
        request,
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
        attempt: Some(plan.attempt.to_string()),
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
    Launched(String, RunRequest, Vec<String>),
    /// The instance this request's token launched has already terminated.
    Ended(RunRequest),
}

async fn send_requests(
    client: &Client,
    plan: &LaunchPlan,
    claims: &Claims,
    on: &mut dyn FnMut(Event),
) -> Result<Sent> {
    let mut no_capacity = Vec::new();
    // The spot quota is not the on-demand one: spot-then-on-demand goes on
    // to its on-demand attempts when the spot quota is reached.
    let on_demand_after = plan.requests.iter().any(|a| !a.spot);
    let mut spot_quota = false;
    for request in &plan.requests {
        if request.spot && spot_quota {
            continue;
        }
        let market = crate::compile::model::Market::of_request(request.spot).name();
        record(claims, plan.key(), request, None)?;
        on(Event::Phase(format!(
            "launching {} {market}",
            request.instance_type
        )));
        on(Event::Progress(format!(
            "launching {} {market} in {}",
            request.instance_type, request.subnet
        )));
        match ec2::launch(client, plan, request).await {
            Ok(id) => {
                record(claims, plan.key(), request, Some(format!("launched {id}")))?;
                settle(claims, plan.key(), Some(&id), None)?;
                return Ok(Sent::Launched(id, request.clone(), no_capacity));
            }
            Err(RequestError::Capacity(why)) => {
                on(Event::Progress(format!(
                    "  no capacity: {why}; trying the next"
                )));
                record(claims, plan.key(), request, Some(why.clone()))?;
                no_capacity.push(format!(
                    "{} {market} in {}: {why}",
                    request.instance_type, request.subnet
                ));
            }
            Err(RequestError::InstanceTerminated) => {
                record(
                    claims,
                    plan.key(),
                    request,
                    Some("IdempotentInstanceTerminated".to_string()),
                )?;
                return Ok(Sent::Ended(request.clone()));
            }
            Err(RequestError::Quota(e)) if request.spot && on_demand_after => {
                on(Event::Progress(format!(
                    "  the spot quota is reached ({e}); on to on demand"
                )));
                record(claims, plan.key(), request, Some(e.to_string()))?;
                no_capacity.push(format!("{} spot: {e}", request.instance_type));
                spot_quota = true;
            }
            Err(RequestError::Quota(e)) | Err(RequestError::Fatal(e)) => {
                record(claims, plan.key(), request, Some(e.to_string()))?;
                settle(claims, plan.key(), None, Some(e.to_string()))?;
                return Err(e);
            }
        }
    }
    let message = format!(
        "no capacity for any type and subnet of the profile ({})",
        no_capacity.join("; ")
    );
    settle(claims, plan.key(), None, Some(message.clone()))?;
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
    (run, attempt): (u32, u32),
    on: &mut dyn FnMut(Event),
) -> Result<Option<String>> {
    let start = Instant::now();
    loop {
        if let Some(i) = ec2::find_run(client, job, run, attempt)
            .await?
            .into_iter()
            .next()
        {
            return Ok(Some(i.id));
        }
        if start.elapsed() > VISIBILITY_BOUND {
            return Ok(None);
        }
        on(Event::Progress(format!(
            "looking for run {run} attempt {attempt} of job {job} by its tags"
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
            Ok(Some(i)) => {
                on(Event::Phase(format!("{} {}", i.id, i.state)));
                on(Event::Progress(format!(
                    "{} {} ({}s)",
                    i.id,
                    i.state,
                    start.elapsed().as_secs()
                )));
            }
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
        claim.key(),
        instance,
        None,
        Vec::new(),
        budget,
        finished,
        claims,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        unsure.requests.push(ClaimedRequest {
            client_token: "t".to_string(),
            instance_type: "g6e.xlarge".to_string(),
            subnet: "s".to_string(),
            spot: false,
            result: None,
            price_per_hour: None,
        });
        assert!(matches!(
            decide(Some(&unsure), "p", "j", "other", false, false, 1_010),
            Decision::Refuse(_)
        ));
    }
}
