//! What a launch sends, decided before any call: the attempts in fallback
//! order (cost-guarded), the tags, the idempotency token, the deadline.

use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use serde::Serialize;

use crate::aws::claim::Claim;
use crate::check::catalog;
use crate::compile::Compiled;
use crate::diagnostics::{Error, Result};

/// Tag keys bootforge sets on every instance and volume it launches.
pub const TAG_PROFILE: &str = "bootforge:profile";
pub const TAG_JOB: &str = "bootforge:job";
pub const TAG_PAYLOAD: &str = "bootforge:payload-sha256";
pub const TAG_DEADLINE: &str = "bootforge:deadline";
pub const TAG_RUN: &str = "bootforge:run";

/// Past timeout + grace, the time an instance is allowed for booting and
/// powering off before `reap` takes it for forgotten.
pub const DEADLINE_MARGIN_SECONDS: u64 = 15 * 60;

/// One RunInstances attempt: where and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub instance_type: String,
    pub subnet: String,
    pub spot: bool,
    /// Derived from profile, job, payload and this attempt: a retried call
    /// is the same call to EC2, another attempt is another call.
    pub client_token: String,
}

/// Everything one launch sends.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchPlan {
    pub profile: String,
    pub job: String,
    /// The run of the job this plan launches (see [`crate::aws::claim`]).
    pub run: u32,
    pub region: String,
    pub ami: String,
    pub security_groups: Vec<String>,
    pub key_pair: Option<String>,
    pub instance_profile: Option<String>,
    pub root_device: String,
    pub root_volume_gb: Option<u32>,
    pub metadata_tags: bool,
    /// The payload in base64, as RunInstances carries it.
    #[serde(skip)]
    pub user_data: String,
    pub payload_sha256: String,
    pub tags: IndexMap<String, String>,
    pub deadline: String,
    pub deadline_epoch: u64,
    pub attempts: Vec<Attempt>,
    /// Instance types left out, and why.
    pub skipped: Vec<String>,
    pub budget_seconds: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ClientToken of one attempt of a run (64 hex characters, EC2's
/// maximum): the same for a retried request, another for another attempt or
/// another run.
pub fn client_token(
    profile: &str,
    job: &str,
    run: (u32, u64),
    payload_sha256: &str,
    attempt: (&str, &str, bool),
) -> String {
    use sha2::Digest as _;
    let (instance_type, subnet, spot) = attempt;
    let (run, launched_at) = (run.0.to_string(), run.1.to_string());
    let mut h = sha2::Sha256::new();
    for part in [
        profile,
        job,
        &run,
        &launched_at,
        payload_sha256,
        instance_type,
        subnet,
        if spot { "spot" } else { "on-demand" },
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-29T01:02:03Z`).
pub fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .to_string()
}

/// An RFC 3339 UTC time (`Z`, fractions allowed) as the time since the epoch.
fn since_epoch(text: &str) -> Option<std::time::Duration> {
    humantime::parse_rfc3339(text.trim())
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
}

/// An RFC 3339 UTC time as seconds since the epoch, fractions included.
pub fn parse_rfc3339_fraction(text: &str) -> Option<f64> {
    since_epoch(text).map(|d| d.as_secs_f64())
}

/// An RFC 3339 UTC time as whole seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    since_epoch(text).map(|d| d.as_secs())
}

/// Plans the launch of `compiled` for the run `claim` holds: every tag and
/// token derives from the claim, never from the current time, so that the
/// same run always sends the same bytes. Fails when no instance type fits
/// the profile's cost ceiling.
pub fn plan(compiled: &Compiled, claim: &Claim) -> Result<LaunchPlan> {
    let p = &compiled.profile.profile;
    let name = &compiled.profile.name;
    let job = &p.job;
    let budget = job.timeout.seconds() + job.grace.seconds();
    let payload_sha256 = compiled.payload.sha256();

    let mut skipped = Vec::new();
    let mut types = Vec::new();
    for t in &p.instance.types {
        match (p.instance.max_cost_usd, catalog::lookup(t)) {
            (None, _) => types.push(t.clone()),
            (Some(ceiling), Some(entry)) => {
                let worst = catalog::job_cost(entry.price_per_hour, budget);
                if worst <= ceiling {
                    types.push(t.clone());
                } else {
                    skipped.push(format!(
                        "{t}: ${:.4}/h × {:.2} h of timeout and grace = ${worst:.2}, over max_cost_usd ${ceiling:.2}",
                        entry.price_per_hour,
                        budget as f64 / 3600.0
                    ));
                }
            }
            (Some(_), None) => skipped.push(format!(
                "{t}: not in the price catalog, so its cost cannot be held to max_cost_usd"
            )),
        }
    }
    if types.is_empty() {
        return Err(Error::CostGuard {
            profile: name.clone(),
            reasons: skipped,
        });
    }
    let markets: &[bool] = if p.instance.spot {
        &[true, false]
    } else {
        &[false]
    };
    let mut attempts = Vec::new();
    for &spot in markets {
        for t in &types {
            for subnet in &p.instance.subnets {
                attempts.push(Attempt {
                    instance_type: t.clone(),
                    subnet: subnet.clone(),
                    spot,
                    client_token: client_token(
                        name,
                        &job.id,
                        (claim.run, claim.launched_at),
                        &payload_sha256,
                        (t, subnet, spot),
                    ),
                });
            }
        }
    }

    let deadline_epoch = claim.launched_at + budget + DEADLINE_MARGIN_SECONDS;
    let mut tags = IndexMap::new();
    tags.insert("Name".to_string(), format!("bootforge-{name}-{}", job.id));
    for (k, v) in &p.instance.tags {
        tags.insert(k.clone(), v.clone());
    }
    tags.insert(TAG_PROFILE.to_string(), name.clone());
    tags.insert(TAG_JOB.to_string(), job.id.clone());
    tags.insert(TAG_RUN.to_string(), claim.run.to_string());
    tags.insert(TAG_PAYLOAD.to_string(), payload_sha256.clone());
    tags.insert(TAG_DEADLINE.to_string(), rfc3339(deadline_epoch));

    Ok(LaunchPlan {
        profile: name.clone(),
        job: job.id.clone(),
        run: claim.run,
        region: p.instance.region.clone(),
        ami: p.instance.ami.clone(),
        security_groups: p.instance.security_groups.clone(),
        key_pair: p.instance.key_pair.clone(),
        instance_profile: p.instance.instance_profile.clone(),
        root_device: p.instance.root_device.clone(),
        root_volume_gb: p.instance.root_volume_gb,
        metadata_tags: p.instance.metadata_tags,
        user_data: compiled.payload.base64(),
        payload_sha256,
        tags,
        deadline: rfc3339(deadline_epoch),
        deadline_epoch,
        attempts,
        skipped,
        budget_seconds: budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for epoch in [0, 951_782_400, 1_795_916_911, 4_102_444_799] {
            assert_eq!(
                parse_rfc3339(&rfc3339(epoch)),
                Some(epoch),
                "{}",
                rfc3339(epoch)
            );
        }
        assert_eq!(rfc3339(1_795_916_911), "2026-11-29T01:48:31Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2026-11-29T01:48:31.250Z"),
            Some(1_795_916_911)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-29 01:48:31",
            "2026-11-29T01:48:31+01:00",
            "x-y-zT1:2:3Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_differ_by_attempt_and_run_and_fit_ec2() {
        let token = |job: &str, run: (u32, u64), attempt: (&str, &str, bool)| {
            client_token("p", job, run, "sha", attempt)
        };
        let a = token("j", (1, 100), ("g6e.xlarge", "subnet-1", false));
        assert_eq!(a.len(), 64);
        assert!(a.is_ascii());
        assert_eq!(a, token("j", (1, 100), ("g6e.xlarge", "subnet-1", false)));
        for other in [
            token("j", (1, 100), ("g6e.xlarge", "subnet-2", false)),
            token("j2", (1, 100), ("g6e.xlarge", "subnet-1", false)),
            token("j", (1, 100), ("g6e.xlarge", "subnet-1", true)),
            token("j", (2, 100), ("g6e.xlarge", "subnet-1", false)),
            token("j", (1, 101), ("g6e.xlarge", "subnet-1", false)),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn a_runs_plan_is_the_same_whenever_it_is_made() {
        let library = crate::Library::builtin();
        let compiled = crate::compile(&library, crate::DEFAULT_PROFILE, &[]).unwrap();
        let claim = Claim::new(
            "traffic-sign-gpu",
            "manual",
            3,
            &compiled.payload.sha256(),
            1_800_000_000,
        );
        let a = serde_json::to_string(&plan(&compiled, &claim).unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = serde_json::to_string(&plan(&compiled, &claim).unwrap()).unwrap();
        assert_eq!(a, b, "nothing in a request depends on the time it is sent");
        let p = plan(&compiled, &claim).unwrap();
        assert_eq!(p.tags["bootforge:run"], "3");
        assert_eq!(p.deadline, rfc3339(1_800_000_000 + 130 * 60 + 15 * 60));
    }
}
