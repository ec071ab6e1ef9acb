//! A job as `launch` drives it: the region and the place of its claim, the
//! dry run, the launch, the optional wait, and the one report the command
//! shows (as text or JSON) with its exit code.

use std::path::{Path, PathBuf};

use aws_sdk_ec2::Client;
use serde::Serialize;

use crate::aws::claim::{CLAIM_FILE, Claim, Claims};
use crate::aws::ec2::{self, DryRun};
use crate::aws::operate::{self, Launched};
use crate::aws::wait::{self, Finished, Intervals};
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

/// What `launch` was asked.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub wait: bool,
    pub follow: bool,
    pub rerun: bool,
    pub intervals: Intervals,
}

/// What `launch` did, as the command reports it (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when this launch started the instance.
    pub launched: bool,
    pub run: u32,
    pub instance_id: String,
    pub state: String,
    pub instance_type: String,
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

/// Launches the job of `compiled` (or attaches to its run), and with
/// `request.wait` follows it to its end.
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
    let launched = operate::launch(
        client,
        compiled,
        &claims,
        request.rerun,
        request.intervals,
        on,
    )
    .await?;
    let wait = match (&launched.finished, request.wait) {
        (Some(_), _) | (None, false) => None,
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
    };
    Ok(report(compiled, launched, wait, &claims))
}

/// The report of `launched`, with how its run ended when it did (found
/// ended, or waited for).
pub(crate) fn report(
    compiled: &Compiled,
    launched: Launched,
    waited: Option<Finished>,
    claims: &Claims,
) -> Report {
    let job = &compiled.profile.profile.job;
    let found_finished = launched.finished.is_some();
    let wait = launched.finished.or(waited);
    let i = launched.instance;
    Report {
        launched: launched.launched,
        run: launched.run,
        instance_id: i.id,
        state: i.state,
        instance_type: i.instance_type,
        subnet: i.subnet,
        private_ip: i.private_ip,
        price_per_hour: launched.price_per_hour,
        cost_at_timeout: launched.cost_at_timeout,
        deadline: i.deadline,
        profile: compiled.profile.name.clone(),
        job: job.id.clone(),
        payload_sha256: compiled.payload.sha256(),
        client_token: launched.attempt.map(|a| a.client_token),
        no_capacity: launched.no_capacity,
        claim: claims.dir().join(CLAIM_FILE),
        claim_shared: launched.claim_shared,
        wait,
        found_finished,
    }
}

/// `launch --dry-run`: whether EC2 would allow the first attempt of a
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
    ec2::dry_run(client, &plan, &plan.attempts[0]).await
}
