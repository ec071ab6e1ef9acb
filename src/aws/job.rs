//! A job as `launch` drives it: the region and the place of its claim, the
//! dry run, the launch, the optional wait, and the one report the command
//! shows (as text or JSON) with its exit code.

use std::path::{Path, PathBuf};

use aws_sdk_ec2::Client;
use serde::Serialize;

use crate::aws::claim::{CLAIM_FILE, Claim, Claims};
use crate::aws::ec2::{self, DryRun};
use crate::aws::operate::{self, Launched};
use crate::aws::retry::{self, Attempts, Verdict};
use crate::aws::wait::{self, Finished, Intervals};
use crate::clock::now;
use crate::compile::Compiled;
use crate::compile::library::Library;
use crate::compile::model::{DEFAULT_PROFILE, Market};
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

/// What `launch` did, as the command reports it (`--json` prints it).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// True when this launch started the instance.
    pub launched: bool,
    pub run: u32,
    /// The run's attempt this report is about (the last one).
    pub attempt: u32,
    /// The retry policy's attempts in all (1 without one).
    pub max_attempts: u32,
    pub instance_id: String,
    pub state: String,
    pub instance_type: String,
    /// `spot` or `on-demand` (the market of the request that launched it).
    pub market: Option<String>,
    pub subnet: Option<String>,
    pub private_ip: Option<String>,
    pub price_per_hour: Option<f64>,
    pub cost_at_timeout: Option<f64>,
    pub deadline: Option<String>,
    pub profile: String,
    pub job: String,
    pub payload_sha256: String,
    pub client_token: Option<String>,
    pub no_capacity: Vec<String>,
    /// The job's claim file.
    pub claim: PathBuf,
    pub claim_shared: bool,
    /// How the run ended: with `--wait`, or when it had already ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<Finished>,
    /// The run's attempts that have ended, each with its market, price and
    /// cost, and their cost summed.
    #[serde(flatten)]
    pub history: Attempts,
    /// Why no further attempt was started, when the profile has a retry
    /// policy and the job has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// Whether the run had ended before this launch.
    #[serde(skip)]
    pub found_finished: bool,
}

impl Report {
    /// The process's exit code: the outcome's (see [`wait::exit_code`])
    /// when the run ended, else 0.
    pub fn exit_code(&self) -> i32 {
        self.wait.as_ref().map_or(0, |f| f.exit_code)
    }
}

/// Launches the job of `compiled` (or attaches to its current attempt), and
/// with `request.wait` follows it to its end. Under a retry policy, an
/// attempt that ended in an outcome the policy names starts the next one,
/// here or in any later launch of the job (the claim says where the run
/// is); the report comes when the job has ended.
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
    let mut rerun = request.rerun;
    loop {
        let launched =
            operate::launch(client, compiled, &claims, rerun, request.intervals, on).await?;
        rerun = false;
        let found_finished = launched.finished.is_some();
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
        match next_step(compiled, &claims, launched, finished, found_finished, on)? {
            Step::Report(report) => return Ok(*report),
            Step::Again => {}
        }
    }
}

/// What a launch does once it knows how the current attempt stands.
pub(crate) enum Step {
    /// The job has ended, or goes on without this launch waiting.
    Report(Box<Report>),
    /// The next attempt of the run: claim it, launch it, follow it.
    Again,
}

/// After `launched` (and, when it has ended, `finished`): the report, or
/// the next attempt under the profile's retry policy.
pub(crate) fn next_step(
    compiled: &Compiled,
    claims: &Claims,
    launched: Launched,
    finished: Option<Finished>,
    found_finished: bool,
    on: &mut dyn FnMut(Event),
) -> Result<Step> {
    let claim = claims.read()?;
    let current = claim.as_ref().filter(|c| {
        c.run == launched.run && c.instance_id.as_deref() == Some(launched.instance.id.as_str())
    });
    let (Some(mut finished), Some(claim)) = (finished, current) else {
        let history = claim
            .as_ref()
            .map_or_else(Attempts::default, |c| retry::attempts(c, None));
        return Ok(Step::Report(Box::new(report(
            compiled,
            launched,
            None,
            claims,
            history,
            None,
            found_finished,
        ))));
    };
    let policy = compiled.profile.profile.job.retry.as_ref();
    let now = now();
    match retry::after(policy, claim, &launched.instance, &mut finished, now) {
        Verdict::Next(ended) => {
            let (attempt, outcome) = (ended.attempt, ended.outcome.clone());
            if retry::advance(claims, claim.run, ended, now)? {
                on(Event::Progress(format!(
                    "job {} run {}: attempt {attempt} ended `{outcome}` on {}; starting attempt {} of {}",
                    claim.job,
                    claim.run,
                    launched.instance.id,
                    attempt + 1,
                    policy.map_or(1, |p| p.attempts)
                )));
            }
            Ok(Step::Again)
        }
        Verdict::End(why) => {
            if let Some(why) = &why {
                on(Event::Progress(format!("job {}: {why}", claim.job)));
            }
            let last = retry::ended(claim, &launched.instance, &finished, now);
            let history = retry::attempts(claim, Some(last));
            Ok(Step::Report(Box::new(report(
                compiled,
                launched,
                Some(finished),
                claims,
                history,
                why,
                found_finished,
            ))))
        }
    }
}

/// The report of `launched`, with how its run ended when it did (found
/// ended, or waited for).
pub(crate) fn report(
    compiled: &Compiled,
    launched: Launched,
    wait: Option<Finished>,
    claims: &Claims,
    history: Attempts,
    retry: Option<String>,
    found_finished: bool,
) -> Report {
    let job = &compiled.profile.profile.job;
    let i = launched.instance;
    let request = launched.request;
    Report {
        launched: launched.launched,
        run: launched.run,
        attempt: launched.attempt,
        max_attempts: job.retry.as_ref().map_or(1, |r| r.attempts),
        instance_id: i.id,
        state: i.state,
        instance_type: i.instance_type,
        market: request
            .as_ref()
            .map(|r| Market::of_request(r.spot).name().to_string()),
        subnet: i.subnet,
        private_ip: i.private_ip,
        price_per_hour: request
            .as_ref()
            .and_then(|r| r.price_per_hour)
            .or(launched.price_per_hour),
        cost_at_timeout: launched.cost_at_timeout,
        deadline: i.deadline,
        profile: compiled.profile.name.clone(),
        job: job.id.clone(),
        payload_sha256: compiled.payload.sha256(),
        client_token: request.map(|r| r.client_token),
        no_capacity: launched.no_capacity,
        claim: claims.dir().join(CLAIM_FILE),
        claim_shared: launched.claim_shared,
        wait,
        history,
        retry,
        found_finished,
    }
}

/// `launch --dry-run`: whether EC2 would allow the first request of a
/// first run, without launching or claiming anything.
pub async fn dry_run(
    client: &Client,
    compiled: &Compiled,
    on: &mut dyn FnMut(Event),
) -> Result<DryRun> {
    let claim = Claim::new(
        &compiled.profile.name,
        &compiled.profile.profile.job.id,
        1,
        &compiled.payload.sha256(),
        now(),
    );
    let plan = crate::aws::plan::plan(compiled, &claim)?;
    for skipped in &plan.skipped {
        on(Event::Warning(format!("not using {skipped}")));
    }
    ec2::dry_run(client, &plan, &plan.requests[0]).await
}
