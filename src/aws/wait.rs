//! `launch --wait`: following a job's instance to its end and telling this
//! run's true outcome: its own status (never an earlier run's), from the
//! EFS, else its console, else what EC2's StateReason says.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::Client;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::aws::ec2::{self, Instance, VISIBILITY_BOUND};
use crate::aws::status::RunStatus;
pub use crate::aws::status::{NO_STATUS, exit_code};
use crate::check::catalog;
use crate::clock::now;
use crate::diagnostics::Result;
use crate::progress::Event;

/// How a waited-for job ended.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Finished {
    pub state: String,
    /// The run's `status.json`, when it wrote one.
    #[schemars(with = "Option<RunStatus>")]
    pub status: Option<Json>,
    /// Where the status came from: `efs`, `console`, or `none`.
    pub source: String,
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
    /// Who ended the job on purpose, when someone did: such a job is never
    /// retried (see [`crate::aws::retry`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_on_purpose: Option<String>,
}

impl Finished {
    /// How an attempt whose instance is gone (in `state`) ended: its own
    /// status, found where `source` says (`efs`, `console`), else what
    /// EC2's StateReason tells.
    pub fn of(
        state: &str,
        status: Option<Json>,
        source: &str,
        state_reason: Option<ec2::StateReason>,
    ) -> Finished {
        let (outcome, source) = match status.as_ref().and_then(|s| s["outcome"].as_str()) {
            Some(o) => (o.to_string(), source),
            None => (outcome_of_reason(state_reason.as_ref()).to_string(), "none"),
        };
        Finished {
            state: state.to_string(),
            exit_code: exit_code(&outcome),
            outcome,
            source: source.to_string(),
            status,
            state_reason,
            terminated_by_bootforge: false,
            ended_on_purpose: None,
        }
    }
}

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
pub(crate) async fn report(
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
    Ok(Finished::of(
        &instance.state,
        status,
        source,
        instance.state_reason.clone(),
    ))
}

/// How long DescribeInstances may fail in a row before `--wait` gives up.
pub const DESCRIBE_ERRORS_BOUND: Duration = Duration::from_secs(300);

/// `--follow`: the job's log as it grows.
pub(crate) struct Follow {
    path: PathBuf,
    offset: u64,
}

impl Follow {
    pub(crate) fn new(job_dir: &Path) -> Follow {
        Follow {
            path: job_dir.join("job.log"),
            offset: 0,
        }
    }

    /// Reports what the log gained since the last look.
    pub(crate) fn poll(&mut self, on: &mut dyn FnMut(Event)) {
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
    let mut follow = follow.then(|| Follow::new(job_dir));
    let mut last = instance.state.clone();
    let mut current = instance.clone();
    let mut terminated_by_bootforge = false;
    let mut next_ec2 = Instant::now() + jitter(intervals.ec2);
    let mut errors_since: Option<Instant> = None;
    let mut backoff = intervals.status;
    let mut status_seen = false;
    on(Event::Phase(format!("{id} {}", instance.state)));
    if let (Some(since), Some(t)) = (instance.launched, catalog::lookup(&instance.instance_type)) {
        on(Event::Billing {
            since,
            per_hour: t.price_per_hour,
        });
    }
    loop {
        if let Some(f) = follow.as_mut() {
            f.poll(on);
        }
        if !status_seen && read_status(job_dir, &id).is_some() {
            status_seen = true;
            on(Event::Phase(format!("{id} powering off")));
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
                on(Event::Phase(format!("{id} {}", current.state)));
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
}
