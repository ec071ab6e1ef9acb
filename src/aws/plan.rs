//! What a launch sends, decided before any call: the RunInstances requests
//! in fallback order (cost-guarded), the tags, the idempotency token, the deadline.

use indexmap::IndexMap;
use serde::Serialize;

use crate::aws::claim::Claim;
use crate::aws::token::client_token;
use crate::check::catalog;
use crate::clock::rfc3339;
use crate::compile::Compiled;
use crate::compile::model::Market;
use crate::diagnostics::{Error, Result};

/// Tag keys bootforge sets on every instance and volume it launches.
pub const TAG_PROFILE: &str = "bootforge:profile";
pub const TAG_JOB: &str = "bootforge:job";
pub const TAG_PAYLOAD: &str = "bootforge:payload-sha256";
pub const TAG_DEADLINE: &str = "bootforge:deadline";
pub const TAG_RUN: &str = "bootforge:run";
pub const TAG_ATTEMPT: &str = "bootforge:attempt";

/// Past timeout + grace, the time an instance is allowed for booting and
/// powering off before `reap` takes it for forgotten.
pub const DEADLINE_MARGIN_SECONDS: u64 = 15 * 60;

/// One RunInstances request of an attempt: where and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRequest {
    pub instance_type: String,
    pub subnet: String,
    pub spot: bool,
    /// Derived from profile, job, payload, the attempt and this request: a
    /// retried call is the same call to EC2, another request another call.
    pub client_token: String,
    /// What an hour is expected to cost: the spot price known (the
    /// catalog's), or the on-demand one.
    pub price_per_hour: Option<f64>,
}

/// Everything one launch sends.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchPlan {
    pub profile: String,
    pub job: String,
    /// The run of the job this plan launches (see [`crate::aws::claim`]).
    pub run: u32,
    /// The attempt of that run (1 for the first).
    pub attempt: u32,
    /// The market this attempt is bought on: the profile's, or on demand
    /// once its retry policy turns there.
    pub market: Market,
    pub region: String,
    pub ami: String,
    pub security_groups: Vec<String>,
    pub key_pair: Option<String>,
    pub instance_profile: Option<String>,
    pub root_device: String,
    pub root_volume_gb: Option<u32>,
    pub metadata_tags: bool,
    /// RunInstances' MaxPrice for spot requests, when the profile sets one.
    pub max_spot_price: Option<f64>,
    /// The payload in base64, as RunInstances carries it.
    #[serde(skip)]
    pub user_data: String,
    pub payload_sha256: String,
    pub tags: IndexMap<String, String>,
    pub deadline: String,
    pub deadline_epoch: u64,
    pub requests: Vec<RunRequest>,
    /// Instance types left out, and why.
    pub skipped: Vec<String>,
    pub budget_seconds: u64,
}

impl LaunchPlan {
    /// The attempt this plan launches, as the claim names it: (run, attempt).
    pub fn key(&self) -> (u32, u32) {
        (self.run, self.attempt)
    }
}

/// Plans the launch of `compiled` for the attempt `claim` holds: every tag
/// and token derives from the claim, never from the current time, so that
/// the same attempt always sends the same bytes. Fails when no instance type fits
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
                let worst = catalog::worst_case(
                    entry,
                    p.instance.market,
                    p.instance.max_spot_price_usd,
                    job.retry.as_ref(),
                    budget,
                );
                if worst <= ceiling {
                    types.push(t.clone());
                } else {
                    let attempts = job.retry.as_ref().map_or(1, |r| r.attempts);
                    let hours = budget as f64 / 3600.0;
                    let priced = if attempts > 1 {
                        format!(
                            "{attempts} attempts of {hours:.2} h of timeout and grace, each at its cap"
                        )
                    } else {
                        let hourly = catalog::worst_hourly(
                            entry,
                            p.instance.market,
                            p.instance.max_spot_price_usd,
                        );
                        format!("${hourly:.4}/h × {hours:.2} h of timeout and grace")
                    };
                    skipped.push(format!(
                        "{t}: {priced} = ${worst:.2}, over max_cost_usd ${ceiling:.2}"
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
    let mut requests = Vec::new();
    let market = job.retry.as_ref().map_or(p.instance.market, |r| {
        r.market(p.instance.market, claim.interruptions())
    });
    for &spot in market.attempts() {
        for t in &types {
            for subnet in &p.instance.subnets {
                let on_demand = catalog::lookup(t).map(|e| e.price_per_hour);
                requests.push(RunRequest {
                    price_per_hour: if spot {
                        catalog::spot_price(t).or(on_demand)
                    } else {
                        on_demand
                    },
                    instance_type: t.clone(),
                    subnet: subnet.clone(),
                    spot,
                    client_token: client_token(
                        name,
                        &job.id,
                        (claim.run, claim.attempt, claim.launched_at),
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
    tags.insert(TAG_ATTEMPT.to_string(), claim.attempt.to_string());
    tags.insert(TAG_PAYLOAD.to_string(), payload_sha256.clone());
    tags.insert(TAG_DEADLINE.to_string(), rfc3339(deadline_epoch));

    Ok(LaunchPlan {
        profile: name.clone(),
        job: job.id.clone(),
        run: claim.run,
        attempt: claim.attempt,
        market,
        region: p.instance.region.clone(),
        ami: p.instance.ami.clone(),
        security_groups: p.instance.security_groups.clone(),
        key_pair: p.instance.key_pair.clone(),
        instance_profile: p.instance.instance_profile.clone(),
        root_device: p.instance.root_device.clone(),
        root_volume_gb: p.instance.root_volume_gb,
        metadata_tags: p.instance.metadata_tags,
        max_spot_price: p.instance.max_spot_price_usd,
        user_data: compiled.payload.base64(),
        payload_sha256,
        tags,
        deadline: rfc3339(deadline_epoch),
        deadline_epoch,
        requests,
        skipped,
        budget_seconds: budget,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
