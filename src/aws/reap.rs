//! The rules of `ps`, `reap` and `terminate`: only bootforge's instances,
//! only past their deadline, one TerminateInstances call per profile.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use serde::Serialize;

use crate::aws::ec2::{self, Instance};
use crate::aws::plan::TAG_JOB;
use crate::check::catalog;
use crate::diagnostics::{Error, Result};

/// Past this many seconds after launch, an instance without a readable
/// deadline tag is reaped: the largest budget bootforge lets a job have
/// (48 h of timeout, 2 h of grace) and the margin for boot and power-off.
pub const UNKNOWN_DEADLINE_SECONDS: u64 = 50 * 3600 + crate::aws::plan::DEADLINE_MARGIN_SECONDS;

/// One live instance as `ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Alive {
    pub instance_id: String,
    pub profile: Option<String>,
    pub job: Option<String>,
    /// The job's run and the attempt of that run this instance is.
    pub run: Option<String>,
    pub attempt: Option<String>,
    pub state: String,
    pub instance_type: String,
    pub age_seconds: u64,
    pub deadline: Option<String>,
    pub past_deadline: bool,
    /// The catalog's price over the instance's age (none when unpriced).
    pub cost_so_far: Option<f64>,
}

/// `instances` as `ps` shows them at `now`.
pub fn alive(instances: &[Instance], now: u64) -> Vec<Alive> {
    instances
        .iter()
        .map(|i| {
            let age = i.launched.map_or(0, |l| now.saturating_sub(l));
            Alive {
                instance_id: i.id.clone(),
                run: i.run.clone(),
                attempt: i
                    .attempt
                    .clone()
                    .or_else(|| i.run.as_ref().map(|_| "1".to_string())),
                profile: i.profile.clone(),
                job: i.job.clone(),
                state: i.state.clone(),
                instance_type: i.instance_type.clone(),
                age_seconds: age,
                deadline: i.deadline.clone(),
                past_deadline: i.deadline_epoch().is_some_and(|d| d < now),
                cost_so_far: catalog::lookup(&i.instance_type)
                    .map(|t| catalog::job_cost(t.price_per_hour, age)),
            }
        })
        .collect()
}

/// What `terminate` may end: the live instances of `job`, and the
/// instances `ids`, each of which must exist in `region` and carry
/// bootforge's job tag (anything else is refused before any call ends
/// anything).
pub async fn targets(
    client: &Client,
    region: &str,
    ids: &[String],
    job: Option<&str>,
) -> Result<Vec<Instance>> {
    if ids.is_empty() && job.is_none() {
        return Err(Error::Usage {
            message: "say which instances: `terminate INSTANCE…` or `terminate --job ID`"
                .to_string(),
        });
    }
    let mut targets = Vec::new();
    if let Some(job) = job {
        targets.extend(ec2::find_job(client, None, job).await?);
    }
    if !ids.is_empty() {
        let found = ec2::describe(client, Vec::new(), ids.to_vec()).await?;
        for id in ids {
            match found.iter().find(|i| &i.id == id) {
                Some(i) if i.job.is_some() => targets.push(i.clone()),
                Some(_) => {
                    return Err(Error::Usage {
                        message: format!(
                            "{id} was not launched by bootforge (it has no {TAG_JOB} tag): not terminating it"
                        ),
                    });
                }
                None => {
                    return Err(Error::Usage {
                        message: format!("no instance {id} in {region}"),
                    });
                }
            }
        }
    }
    targets.retain(|i| i.state != "terminated");
    Ok(targets)
}

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
            attempt: None,
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
