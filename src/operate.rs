//! Launching and following a job's instance: the steps of the launcher's
//! contract, reporting progress through a callback (the library never prints).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::Client;
use serde::Serialize;
use serde_json::Value as Json;

use crate::catalog;
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

/// What `launch` did.
#[derive(Debug, Clone, Serialize)]
pub struct Launched {
    /// False when a live instance of the same job was found instead.
    pub launched: bool,
    pub instance: Instance,
    pub attempt: Option<Attempt>,
    /// Attempts that found no capacity, in order.
    pub no_capacity: Vec<String>,
    pub price_per_hour: Option<f64>,
    pub cost_at_timeout: Option<f64>,
}

/// Launches the plan's job, or finds the live instance a previous launch of
/// the same job started; then waits (bounded) for it to run.
pub async fn launch(
    client: &Client,
    plan: &LaunchPlan,
    poll: Duration,
    on: &mut dyn FnMut(Event),
) -> Result<Launched> {
    let existing = ec2::find_job(client, Some(&plan.profile), &plan.job).await?;
    let (launched, id, attempt, no_capacity) = if let Some(found) = existing.first() {
        on(Event::Progress(format!(
            "job {} of profile {} already has instance {} ({}): not launching another",
            plan.job, plan.profile, found.id, found.state
        )));
        (false, found.id.clone(), None, Vec::new())
    } else {
        let mut no_capacity = Vec::new();
        let mut started = None;
        for attempt in &plan.attempts {
            let market = if attempt.spot { "spot" } else { "on-demand" };
            on(Event::Progress(format!(
                "launching {} {market} in {}",
                attempt.instance_type, attempt.subnet
            )));
            match ec2::launch(client, plan, attempt).await {
                Ok(id) => {
                    started = Some((id, attempt.clone()));
                    break;
                }
                Err(AttemptError::Capacity(why)) => {
                    on(Event::Progress(format!(
                        "  no capacity: {why}; trying the next"
                    )));
                    no_capacity.push(format!(
                        "{} {market} in {}: {why}",
                        attempt.instance_type, attempt.subnet
                    ));
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
            }
        }
        let Some((id, attempt)) = started else {
            return Err(Error::Aws {
                operation: "RunInstances",
                code: "InsufficientInstanceCapacity".to_string(),
                message: format!("no capacity for any type and subnet of the profile ({})", no_capacity.join("; ")),
                help: Some("add subnets in other availability zones or more instance types to the profile, or retry later".to_string()),
            });
        };
        (true, id, Some(attempt), no_capacity)
    };

    let start = Instant::now();
    let instance = loop {
        let current = ec2::get(client, &id).await?;
        match current {
            Some(i) if i.state != "pending" => break i,
            Some(i) => on(Event::Progress(format!(
                "{} {} ({}s)",
                i.id,
                i.state,
                start.elapsed().as_secs()
            ))),
            None => on(Event::Progress(format!(
                "{id} not visible yet ({}s)",
                start.elapsed().as_secs()
            ))),
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(Error::Aws {
                operation: "DescribeInstances",
                code: String::new(),
                message: format!("{id} is still not running after 10 minutes"),
                help: Some(
                    "look at it in the EC2 console; `bootforge terminate` ends it".to_string(),
                ),
            });
        }
        tokio::time::sleep(poll).await;
    };
    let price = catalog::lookup(&instance.instance_type).map(|t| t.price_per_hour);
    Ok(Launched {
        launched,
        cost_at_timeout: price.map(|p| p * plan.budget_seconds as f64 / 3600.0),
        price_per_hour: price,
        instance,
        attempt,
        no_capacity,
    })
}

/// How a waited-for job ended.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub state: String,
    /// The job's `status.json`, when it wrote one.
    pub status: Option<Json>,
    pub outcome: String,
    /// 0 succeeded, 1 any other outcome, 3 no status was ever written.
    pub exit_code: i32,
    /// Whether bootforge had to terminate the instance itself (it outlived
    /// its deadline, or stopped instead of terminating).
    pub terminated_by_bootforge: bool,
}

/// The exit code of `launch --wait` when the job wrote no status at all.
pub const NO_STATUS: i32 = 3;

/// What a job's status means for `--wait`'s exit code.
pub fn exit_code(status: Option<&Json>) -> (String, i32) {
    match status.and_then(|s| s["outcome"].as_str()) {
        Some("succeeded") => ("succeeded".to_string(), 0),
        Some(other) => (other.to_string(), 1),
        None => ("no-status".to_string(), NO_STATUS),
    }
}

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

/// Follows instance `id` until it is terminated, then reads the job's
/// status from `job_dir` (where this host sees the job's directory). An
/// instance past `deadline` (seconds since the epoch), or stopped instead of
/// terminated, is terminated.
pub async fn wait(
    client: &Client,
    id: &str,
    job_dir: &Path,
    deadline: u64,
    poll: Duration,
    follow: bool,
    on: &mut dyn FnMut(Event),
) -> Result<Finished> {
    let start = Instant::now();
    let mut follow = follow.then(|| Follow {
        path: job_dir.join("job.log"),
        offset: 0,
    });
    let mut last = String::new();
    let mut terminated_by_bootforge = false;
    let state = loop {
        if let Some(f) = follow.as_mut() {
            f.poll(on);
        }
        let state = ec2::get(client, id)
            .await?
            .map_or_else(|| "terminated".to_string(), |i| i.state);
        if state != last {
            on(Event::Progress(format!(
                "{id} {state} ({}s)",
                start.elapsed().as_secs()
            )));
            last.clone_from(&state);
        }
        match state.as_str() {
            "terminated" => break state,
            "stopped" => {
                on(Event::Progress(format!(
                    "{id} stopped instead of terminating: terminating it"
                )));
                ec2::terminate(client, &[id.to_string()]).await?;
                terminated_by_bootforge = true;
            }
            _ if now() > deadline && !terminated_by_bootforge => {
                on(Event::Progress(format!(
                    "{id} is past its deadline: terminating it"
                )));
                ec2::terminate(client, &[id.to_string()]).await?;
                terminated_by_bootforge = true;
            }
            _ => {}
        }
        tokio::time::sleep(poll).await;
    };
    if let Some(f) = follow.as_mut() {
        f.poll(on);
    }
    let status = std::fs::read_to_string(job_dir.join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Json>(&t).ok());
    let (outcome, exit_code) = exit_code(status.as_ref());
    Ok(Finished {
        state,
        status,
        outcome,
        exit_code,
        terminated_by_bootforge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_exit_codes() {
        let s = |o: &str| serde_json::json!({ "outcome": o });
        assert_eq!(exit_code(Some(&s("succeeded"))).1, 0);
        for o in [
            "failed",
            "timed_out",
            "mount_failed",
            "deps_failed",
            "gpu_missing",
        ] {
            assert_eq!(exit_code(Some(&s(o))), (o.to_string(), 1));
        }
        assert_eq!(exit_code(None).1, NO_STATUS);
        assert_eq!(exit_code(Some(&serde_json::json!({}))).1, NO_STATUS);
    }
}
