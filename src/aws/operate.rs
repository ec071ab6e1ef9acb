//! Launching a job's instance under EC2's documented semantics: one job,
//! one instance (through the job's [`crate::aws::claim`] and the rules of
//! [`crate::aws::decide`]), fallback requests each with its token, the
//! instance as RunInstances describes it (DescribeInstances may not know it
//! yet), attaching to a run another host started, a job queued when the
//! account's quota refuses it. Nothing here waits on an instance: `wait`
//! follows one, `advance` passes over all. Progress goes through a
//! callback: the library never prints.

use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use serde::Serialize;

use crate::aws::claim::{Claim, ClaimedRequest, Claims};
use crate::aws::decide::{Decision, claim_step, requeue, settle, still_starting};
use crate::aws::ec2::{self, Instance, RequestError, VISIBILITY_BOUND};
use crate::aws::index::Index;
use crate::aws::plan::{LaunchPlan, RunRequest};
use crate::aws::wait::{Finished, Intervals, report};
use crate::check::catalog;
use crate::clock::now;
use crate::compile::Compiled;
use crate::diagnostics::{Error, Result};
pub use crate::progress::Event;

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
    /// When the attempt had already ended: its outcome, as `--wait` tells it.
    pub finished: Option<Finished>,
    /// Whether the claim is on the directory the launching hosts share
    /// (false: on this host only).
    pub claim_shared: bool,
}

/// Where a launch left the job.
#[derive(Debug, Clone)]
pub enum Started {
    /// The current attempt's instance: started by this launch, or the one
    /// it has.
    Instance(Box<Launched>),
    /// The run waits for its turn, at this place among its profile's
    /// queued jobs.
    Queued(Box<Claim>, usize),
    /// The run had ended: the claim holds its report.
    Ended(Box<Claim>),
}

/// Launches `compiled`'s job, or attaches to the run another launch of it
/// started (in this process, another, or on another host sharing the job's
/// directory); reports a run that has ended, or that the job is queued.
pub async fn launch(
    client: &Client,
    compiled: &Compiled,
    claims: &Claims,
    rerun: bool,
    intervals: Intervals,
    on: &mut dyn FnMut(Event),
) -> Result<Started> {
    let job = compiled.profile.profile.job.id.clone();
    let start = Instant::now();
    loop {
        // For --rerun: whether the claimed run's instance has ended.
        let ended = match claims.read()? {
            Some(c) if rerun => match &c.instance_id {
                Some(id) => ec2::get(client, id)
                    .await?
                    .map_or(gone_for_good(&c), |i| i.state == "terminated"),
                None => false,
            },
            _ => false,
        };
        match claim_step(claims, compiled, rerun, ended)? {
            Decision::Launch(claim) => {
                return launch_run(client, compiled, claims, claim, on, Some(intervals)).await;
            }
            Decision::Attach(claim) => {
                return attach(client, compiled, claims, claim, intervals, on).await;
            }
            Decision::Queued(claim, at) => return Ok(Started::Queued(Box::new(claim), at)),
            Decision::Ended(claim) => return Ok(Started::Ended(Box::new(claim))),
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

/// Whether the claim's instance, unknown to DescribeInstances, was launched
/// long enough ago that EC2 no longer lists it (it terminated), rather
/// than not yet (eventual consistency).
pub fn gone_for_good(claim: &Claim) -> bool {
    now().saturating_sub(claim.launched_at) > VISIBILITY_BOUND.as_secs()
}

/// The claim's instance `id` as the claim knows it, when EC2 does not show
/// it: pending while it may not be visible yet, else terminated.
pub fn from_claim(id: &str, claim: &Claim) -> Instance {
    let state = if gone_for_good(claim) {
        "terminated"
    } else {
        "pending"
    };
    Instance::of_claim(id, claim, state)
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

/// Sends the run's attempts in order, each recorded before it is sent, and
/// reports the instance as RunInstances described it. With `patience` (a
/// launch's intervals), it may wait, bounded, for EC2 to show an instance
/// its token started before and for that run's status; a pass of `advance`
/// has none, and leaves that to its next pass.
pub(crate) async fn launch_run(
    client: &Client,
    compiled: &Compiled,
    claims: &Claims,
    claim: Claim,
    on: &mut dyn FnMut(Event),
    patience: Option<Intervals>,
) -> Result<Started> {
    let plan = crate::aws::plan::plan(compiled, &claim)?;
    on(Event::Progress(format!(
        "job {} run {} attempt {}: launching (claim in {})",
        plan.job,
        plan.run,
        plan.attempt,
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
    let (mut instance, request, no_capacity) = match result? {
        Sent::Launched(instance, request, no_capacity) => (instance, Some(request), no_capacity),
        Sent::Queued(claim) => {
            let at = Index::of(claims.jobs_dir())
                .live()?
                .position(&claim.job)
                .unwrap_or(1);
            on(Event::Progress(format!(
                "job {} is queued (place {at}): {}",
                claim.job,
                claim.queued.as_ref().map_or("", |q| q.reason.as_str())
            )));
            return Ok(Started::Queued(Box::new(claim), at));
        }
        Sent::Ended(request) => {
            // The token of `request` launched an instance that has
            // terminated since: the attempt is over. Its id, from its tags;
            // the claim records that this request launched it (its market
            // and price are the attempt's).
            let patient = patience.is_some();
            let Some(id) = find_run_instance(client, &plan.job, plan.key(), on, patient).await?
            else {
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
            record(claims, plan.key(), &request, Some(format!("launched {id}")))?;
            settle(claims, plan.key(), Some(&id), None)?;
            let claim = claims.read()?.unwrap_or(claim);
            let instance = match ec2::get(client, &id).await? {
                Some(i) => i,
                None => from_claim(&id, &claim),
            };
            let finished = match patience {
                Some(intervals) if instance.state == "terminated" => {
                    Some(report(client, &instance, claims.dir(), intervals, on).await?)
                }
                _ => None,
            };
            return Ok(Started::Instance(Box::new(launched(
                false,
                plan.key(),
                instance,
                None,
                Vec::new(),
                plan.budget_seconds,
                finished,
                claims,
            ))));
        }
    };
    // What RunInstances' description lacks, the plan knows.
    instance.profile.get_or_insert_with(|| plan.profile.clone());
    instance.job.get_or_insert_with(|| plan.job.clone());
    instance.run.get_or_insert_with(|| plan.run.to_string());
    instance
        .attempt
        .get_or_insert_with(|| plan.attempt.to_string());
    instance
        .deadline
        .get_or_insert_with(|| plan.deadline.clone());
    Ok(Started::Instance(Box::new(launched(
        true,
        plan.key(),
        instance,
        request,
        no_capacity,
        plan.budget_seconds,
        None,
        claims,
    ))))
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

enum Sent {
    Launched(Instance, RunRequest, Vec<String>),
    /// The account's quota refused it: the job is back in the queue.
    Queued(Claim),
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
            Ok(instance) => {
                let id = instance.id.clone();
                record(claims, plan.key(), request, Some(format!("launched {id}")))?;
                settle(claims, plan.key(), Some(&id), None)?;
                return Ok(Sent::Launched(instance, request.clone(), no_capacity));
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
            Err(RequestError::Quota(e)) => {
                // Not the job's failure: the account's limit. It waits in
                // the queue, and a pass of `advance` tries it again.
                on(Event::Progress(format!(
                    "  {e}; the job waits in the queue"
                )));
                record(claims, plan.key(), request, Some(e.to_string()))?;
                return match requeue(claims, plan.key(), &e.to_string())? {
                    Some(claim) => Ok(Sent::Queued(claim)),
                    None => Err(e),
                };
            }
            Err(RequestError::Fatal(e)) => {
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
    patient: bool,
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
        if !patient || start.elapsed() > VISIBILITY_BOUND {
            return Ok(None);
        }
        on(Event::Progress(format!(
            "looking for run {run} attempt {attempt} of job {job} by its tags"
        )));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Attaches to the run another launch started: its instance as EC2 shows
/// it now (as the claim knows it while EC2 does not), and its outcome once
/// it has terminated, also long after EC2 stopped listing it.
async fn attach(
    client: &Client,
    compiled: &Compiled,
    claims: &Claims,
    claim: Claim,
    intervals: Intervals,
    on: &mut dyn FnMut(Event),
) -> Result<Started> {
    let id = claim.instance_id.clone().unwrap_or_default();
    on(Event::Progress(format!(
        "job {} run {} already has instance {id}: not launching another",
        claim.job, claim.run
    )));
    let budget = compiled.profile.profile.job.timeout.seconds()
        + compiled.profile.profile.job.grace.seconds();
    let instance = match ec2::get(client, &id).await? {
        Some(i) => i,
        None => from_claim(&id, &claim),
    };
    let finished = if instance.state == "terminated" {
        Some(report(client, &instance, claims.dir(), intervals, on).await?)
    } else {
        None
    };
    Ok(Started::Instance(Box::new(launched(
        false,
        claim.key(),
        instance,
        None,
        Vec::new(),
        budget,
        finished,
        claims,
    ))))
}
