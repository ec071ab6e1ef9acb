//! A job as `launch` drives it: the region and the place of its claim, the
//! dry run, the launch, the optional wait, and the one report the command
//! shows (as text or JSON) with its exit code.

use std::path::PathBuf;

use aws_sdk_ec2::Client;

use crate::aws::claim::{CLAIM_FILE, Claims};
use crate::aws::ec2::{self, DryRun};
use crate::aws::operate::{self, Started};
pub use crate::aws::report::Report;
use crate::aws::report::{Step, max_attempts, next_step, queued, recorded};
use crate::aws::wait::{self, Intervals};
use crate::clock::now;
use crate::compile::Compiled;
use crate::compile::library::Library;
use crate::compile::model::DEFAULT_PROFILE;
use crate::compile::profile::load;
use crate::diagnostics::Result;
use crate::progress::Event;

/// The region of commands that take no profile: the one given, else
/// `AWS_REGION`, `AWS_DEFAULT_REGION`, else the default profile's.
pub fn region(library: &Library, given: Option<&str>) -> Result<String> {
    if let Some(r) = given {
        return Ok(r.to_string());
    }
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Ok(r) = std::env::var(var)
            && !r.is_empty()
        {
            return Ok(r);
        }
    }
    Ok(load(library, DEFAULT_PROFILE, &[])?.profile.instance.region)
}

pub use crate::aws::claim::local_claims;

/// Around `terminate`: the job claims of `instances` record that they are
/// being ended on purpose (`ended`), before TerminateInstances is sent, so
/// that no retry policy starts another attempt whenever a waiter looks;
/// with `ended` false, for those EC2 refused to terminate, the record is
/// taken back. (EC2's `Client.UserInitiatedShutdown` says so too.) A claim
/// is found where the instance's profile, loaded with `overrides`, keeps
/// it; an instance whose profile is not in the library is left to EC2's
/// StateReason.
pub fn record_ended_on_purpose(
    library: &Library,
    overrides: &[crate::compile::overrides::Override],
    instances: &[&ec2::Instance],
    ended: bool,
) {
    for i in instances {
        let (Some(profile), Some(job)) = (i.profile.as_deref(), i.job.as_deref()) else {
            continue;
        };
        let Ok(loaded) = load(library, profile, overrides) else {
            continue;
        };
        let j = &loaded.profile.job;
        let host_dir = PathBuf::from(j.host_log_dir.as_deref().unwrap_or(&j.log_dir));
        // Only a claim that is there: no job directory is made for this.
        let shared = host_dir.join(job).join(CLAIM_FILE).is_file();
        if !shared && !local_claims().join(job).join(CLAIM_FILE).is_file() {
            continue;
        }
        if let Ok(claims) = Claims::open(&host_dir, &local_claims(), job) {
            let _ = if ended {
                claims.end_on_purpose(&i.id, now())
            } else {
                claims.not_ended(&i.id)
            };
        }
    }
}

/// What `launch` was asked.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub wait: bool,
    pub follow: bool,
    pub rerun: bool,
    pub intervals: Intervals,
}

/// How long a `launch --wait` of a queued job waits before it asks for
/// its turn again.
pub const QUEUED_LOOK: std::time::Duration = std::time::Duration::from_secs(5);

/// Launches the job of `compiled` (or attaches to its current attempt), and
/// with `request.wait` follows it to its end. Under a retry policy, an
/// attempt that ended in an outcome the policy names starts the next one,
/// here or in any later launch of the job, or in a pass of `advance` (the
/// claim says where the run is); the report comes when the job has ended.
/// A job beyond its profile's `max_running`, or refused by the account's
/// quota, is queued: reported so, or with `wait` waited for.
pub async fn launch(
    client: &Client,
    compiled: &Compiled,
    request: Request,
    on: &mut dyn FnMut(Event),
) -> Result<Report> {
    let job = &compiled.profile.profile.job;
    let host_dir = PathBuf::from(job.host_log_dir.as_deref().unwrap_or(&job.log_dir));
    let claims = Claims::open(&host_dir, &local_claims(), &job.id)?;
    if !claims.shared {
        on(Event::Warning(format!(
            "{} is not on this host: the claim on job {} is kept in {}, which guards against launches from this host only",
            host_dir.display(),
            job.id,
            claims.dir().display()
        )));
    }
    on(Event::Phase(format!("claiming job {}", job.id)));
    let policy = job.retry.as_ref();
    let mut rerun = request.rerun;
    loop {
        let started =
            operate::launch(client, compiled, &claims, rerun, request.intervals, on).await?;
        rerun = false;
        let launched = match started {
            Started::Instance(launched) => *launched,
            Started::Ended(claim) => return deliver(&claims, recorded(&claim)?, request.wait),
            Started::Queued(claim, place) => {
                if !request.wait {
                    let first_type = compiled.profile.profile.instance.types.first();
                    return Ok(queued(
                        &claim,
                        max_attempts(policy),
                        first_type.map_or("", String::as_str),
                        place,
                        &claims,
                    ));
                }
                on(Event::Phase(format!("queued (place {place})")));
                tokio::time::sleep(QUEUED_LOOK).await;
                continue;
            }
        };
        let finished = match (launched.finished.clone(), request.wait) {
            (Some(f), _) => Some(f),
            (None, true) => Some(
                wait::wait(
                    client,
                    &launched.instance,
                    claims.dir(),
                    request.intervals,
                    request.follow,
                    on,
                )
                .await?,
            ),
            (None, false) => None,
        };
        match next_step(policy, &claims, launched, finished, request.wait, on)? {
            Step::Report(report) => return Ok(*report),
            Step::Again => {}
        }
    }
}

/// A run's recorded end, handed to a caller that waited for it
/// (`launch --wait`): acknowledged, as delivered.
pub fn deliver(claims: &Claims, report: Report, waited: bool) -> Result<Report> {
    if waited {
        crate::aws::report::acknowledge(claims, report.run)?;
    }
    Ok(report)
}

/// `launch --dry-run`: whether EC2 would allow the first request of a
/// first run, without launching or claiming anything.
pub async fn dry_run(
    client: &Client,
    compiled: &Compiled,
    on: &mut dyn FnMut(Event),
) -> Result<DryRun> {
    let claim = crate::aws::decide::fresh_claim(compiled, now());
    let plan = crate::aws::plan::plan(compiled, &claim)?;
    for skipped in &plan.skipped {
        on(Event::Warning(format!("not using {skipped}")));
    }
    ec2::dry_run(client, &plan, &plan.requests[0]).await
}
