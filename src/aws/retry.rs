//! A job's retry policy at work: once an attempt has ended, whether the
//! run goes on with another attempt (same job id, directory and checkpoint
//! folder) or the job ends, and what each attempt cost.
//!
//! The rules, in order: a job ended on purpose (`bootforge terminate`, as
//! the claim records it, or any call that EC2 reports as
//! `Client.UserInitiatedShutdown`, or bootforge's own terminate past the
//! deadline) is never retried; an outcome the policy does not name ends the
//! job; so does a spent policy. Everything else starts the next attempt,
//! once the last one's instance is gone, so that a run never has two
//! instances at once.

use serde::{Deserialize, Serialize};

use crate::aws::claim::{Claim, Claims, EndedAttempt};
use crate::aws::ec2::Instance;
use crate::aws::wait::{Finished, exit_code};
use crate::check::catalog;
use crate::compile::model::{Market, Retry};
use crate::diagnostics::Result;

/// The StateReason EC2 gives an instance terminated by an API call (ours,
/// the console's, anyone's).
pub const USER_TERMINATED: &str = "Client.UserInitiatedShutdown";

/// The outcome `launch` reports for a job ended on purpose, when its own
/// status says only that it was stopped from outside (or nothing).
pub const TERMINATED: &str = "terminated";

/// What comes after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The next attempt: the claim's current one ended as this says.
    Next(EndedAttempt),
    /// The job has ended; why no attempt follows, when a policy was there
    /// to start one.
    End(Option<String>),
}

/// What the claim records of `instance` being ended on purpose (by
/// `bootforge terminate`).
fn recorded<'a>(claim: &'a Claim, instance: &Instance) -> Option<&'a String> {
    claim
        .ended_on_purpose
        .as_ref()
        .filter(|_| claim.instance_id.as_deref() == Some(instance.id.as_str()))
}

/// Who or what ended `instance` on purpose, if anything did.
pub fn on_purpose(claim: &Claim, instance: &Instance, finished: &Finished) -> Option<String> {
    if let Some(who) = recorded(claim, instance) {
        return Some(who.clone());
    }
    if finished.terminated_by_bootforge {
        return Some("bootforge, past the instance's deadline".to_string());
    }
    finished
        .state_reason
        .as_ref()
        .filter(|r| r.code == USER_TERMINATED)
        .map(|r| format!("a TerminateInstances call ({})", r.code))
}

/// How the claim's current attempt ended on `instance`, priced: runtime
/// (from its launch to `now`) × the price of the request that launched it.
pub fn ended(claim: &Claim, instance: &Instance, finished: &Finished, now: u64) -> EndedAttempt {
    let request = claim.request_of(&instance.id);
    let launched_at = instance.launched.unwrap_or(claim.launched_at);
    // The attempt costs until it ended: its status says when; else until it
    // was seen gone, and never past the instance's own deadline.
    let ended_at = finished
        .status
        .as_ref()
        .and_then(|s| s["ended_at"].as_str())
        .and_then(crate::clock::parse_rfc3339)
        .filter(|t| (launched_at..=now).contains(t))
        .unwrap_or(now)
        .min(instance.deadline_epoch().unwrap_or(u64::MAX))
        .max(launched_at);
    let price = request.and_then(|r| r.price_per_hour);
    EndedAttempt {
        attempt: claim.attempt,
        instance_id: instance.id.clone(),
        instance_type: request.map_or(instance.instance_type.clone(), |r| r.instance_type.clone()),
        market: match request {
            Some(r) => Market::of_request(r.spot).name(),
            None if instance.id.starts_with("local-") => "local",
            None => "unknown",
        }
        .to_string(),
        price_per_hour: price,
        launched_at,
        ended_at,
        outcome: finished.outcome.clone(),
        state_reason: finished.state_reason.as_ref().map(|r| r.code.clone()),
        cost_usd: price.map(|p| catalog::job_cost(p, ended_at - launched_at)),
    }
}

/// What follows the claim's current attempt, which ended on `instance` as
/// `finished` says. A job ended on purpose whose status tells no more than
/// an outside stop gets the outcome [`TERMINATED`] in `finished`.
pub fn after(
    policy: Option<&Retry>,
    claim: &Claim,
    instance: &Instance,
    finished: &mut Finished,
    now: u64,
) -> Verdict {
    let purpose = on_purpose(claim, instance, finished);
    if recorded(claim, instance).is_some()
        && matches!(finished.outcome.as_str(), "interrupted" | "no_status")
    {
        finished.outcome = TERMINATED.to_string();
        finished.exit_code = exit_code(TERMINATED);
    }
    finished.ended_on_purpose.clone_from(&purpose);
    let Some(policy) = policy.filter(|_| finished.outcome != "succeeded") else {
        return Verdict::End(None);
    };
    let why = if let Some(who) = purpose {
        format!("ended on purpose by {who}: never retried")
    } else if !policy.retries(&finished.outcome) {
        format!(
            "the retry policy does not name `{}` (it retries on {})",
            finished.outcome,
            policy
                .on
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if claim.attempt >= policy.attempts {
        format!(
            "the retry policy is spent: {} of {} attempts",
            claim.attempt, policy.attempts
        )
    } else {
        return Verdict::Next(ended(claim, instance, finished, now));
    };
    Verdict::End(Some(why))
}

/// Moves the claim from its attempt `ended.attempt` (on `ended.instance_id`)
/// to the next one, held by this process. False when another launch of the
/// job has moved it already: then that one starts the next attempt.
pub fn advance(claims: &Claims, run: u32, ended: EndedAttempt, now: u64) -> Result<bool> {
    claims.update(|current| match current {
        Some(c)
            if c.key() == (run, ended.attempt)
                && c.instance_id.as_deref() == Some(ended.instance_id.as_str()) =>
        {
            (Some(c.next_attempt(ended, now)), true)
        }
        _ => (None, false),
    })
}

/// Every attempt of a run that has ended, and what they cost together.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempts {
    /// The run's attempts, oldest first: the earlier ones and, once the
    /// job has ended, the last one.
    pub attempts: Vec<EndedAttempt>,
    /// The sum of their costs (runtime × price); absent when one has no
    /// known price.
    pub cost_usd: Option<f64>,
}

/// The attempts of `claim`'s run, with `last` (the current attempt, once it
/// has ended).
pub fn attempts(claim: &Claim, last: Option<EndedAttempt>) -> Attempts {
    let attempts: Vec<EndedAttempt> = claim.earlier.iter().cloned().chain(last).collect();
    let cost_usd = attempts
        .iter()
        .map(|a| a.cost_usd)
        .sum::<Option<f64>>()
        .filter(|_| !attempts.is_empty());
    Attempts { attempts, cost_usd }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::claim::ClaimedRequest;
    use crate::aws::ec2::StateReason;
    use crate::compile::model::RetryOn;

    fn instance(id: &str) -> Instance {
        Instance {
            id: id.to_string(),
            state: "terminated".to_string(),
            instance_type: "g6e.xlarge".to_string(),
            subnet: None,
            private_ip: None,
            launched: Some(1_000),
            profile: Some("p".to_string()),
            job: Some("j".to_string()),
            run: Some("1".to_string()),
            attempt: Some("1".to_string()),
            deadline: None,
            state_reason: None,
        }
    }

    fn finished(outcome: &str, reason: Option<&str>) -> Finished {
        Finished {
            state: "terminated".to_string(),
            status: None,
            source: "efs".to_string(),
            outcome: outcome.to_string(),
            exit_code: exit_code(outcome),
            state_reason: reason.map(|code| StateReason {
                code: code.to_string(),
                message: String::new(),
            }),
            terminated_by_bootforge: false,
            ended_on_purpose: None,
        }
    }

    fn claim_on(id: &str, spot: bool) -> Claim {
        let mut c = Claim::new("p", "j", 1, "sha", 900);
        c.instance_id = Some(id.to_string());
        c.requests.push(ClaimedRequest {
            client_token: "t".to_string(),
            instance_type: "g6e.xlarge".to_string(),
            subnet: "s".to_string(),
            spot,
            result: Some(format!("launched {id}")),
            price_per_hour: Some(if spot { 0.67 } else { 1.861 }),
        });
        c
    }

    fn policy(attempts: u32) -> Retry {
        Retry {
            on: vec![RetryOn::Interrupted, RetryOn::LaunchFailed],
            attempts,
            on_demand_after: Some(2),
        }
    }

    #[test]
    fn only_named_outcomes_of_an_unspent_policy_start_another_attempt() {
        let c = claim_on("i-1", true);
        let i = instance("i-1");
        let spot = Some("Server.SpotInstanceTermination");
        let mut f = finished("interrupted", spot);
        match after(Some(&policy(3)), &c, &i, &mut f, 4_600) {
            Verdict::Next(e) => {
                assert_eq!((e.attempt, e.market.as_str()), (1, "spot"));
                // An hour at the spot price.
                assert!((e.cost_usd.unwrap() - 0.67).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
        let mut f = finished("succeeded", None);
        assert_eq!(
            after(Some(&policy(3)), &c, &i, &mut f, 4_600),
            Verdict::End(None)
        );
        for outcome in ["failed", "timed_out", "no_status"] {
            let mut f = finished(outcome, None);
            assert!(
                matches!(after(Some(&policy(3)), &c, &i, &mut f, 4_600), Verdict::End(Some(why)) if why.contains(outcome)),
                "{outcome}"
            );
        }
        let mut last = c.clone();
        last.attempt = 3;
        let mut f = finished("interrupted", spot);
        assert!(
            matches!(after(Some(&policy(3)), &last, &i, &mut f, 4_600), Verdict::End(Some(why)) if why.contains("spent"))
        );
        let mut f = finished("interrupted", spot);
        assert_eq!(after(None, &c, &i, &mut f, 4_600), Verdict::End(None));
    }

    #[test]
    fn a_job_ended_on_purpose_is_never_retried() {
        let i = instance("i-1");
        // Recorded in the claim by `bootforge terminate`.
        let mut c = claim_on("i-1", true);
        c.ended_on_purpose = Some("bootforge terminate (host:1)".to_string());
        let mut f = finished("interrupted", Some(USER_TERMINATED));
        assert!(
            matches!(after(Some(&policy(3)), &c, &i, &mut f, 4_600), Verdict::End(Some(why)) if why.contains("on purpose"))
        );
        assert_eq!(f.outcome, TERMINATED);
        assert_eq!(f.exit_code, 1);
        // Told by EC2 alone: not retried, and the status's outcome stays.
        let c = claim_on("i-1", true);
        let mut f = finished("interrupted", Some(USER_TERMINATED));
        assert!(matches!(
            after(Some(&policy(3)), &c, &i, &mut f, 4_600),
            Verdict::End(Some(_))
        ));
        assert_eq!(f.outcome, "interrupted");
        assert!(f.ended_on_purpose.is_some());
        // A claim's record about another instance says nothing of this one.
        let mut c = claim_on("i-2", true);
        c.ended_on_purpose = Some("bootforge terminate (host:1)".to_string());
        let mut f = finished("interrupted", Some("Server.SpotInstanceTermination"));
        assert!(matches!(
            after(Some(&policy(3)), &c, &i, &mut f, 4_600),
            Verdict::Next(_)
        ));
    }

    #[test]
    fn attempts_sum_their_costs_and_one_move_wins() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::open(dir.path(), dir.path(), "j").unwrap();
        let c = claim_on("i-1", true);
        claims.update(|_| (Some(c.clone()), ())).unwrap();
        let f = finished("interrupted", None);
        let e = ended(&c, &instance("i-1"), &f, 1_000 + 1_800);
        assert!(advance(&claims, 1, e.clone(), 3_000).unwrap());
        assert!(
            !advance(&claims, 1, e.clone(), 3_000).unwrap(),
            "a second waiter does not move it again"
        );
        let mut next = claims.read().unwrap().unwrap();
        assert_eq!((next.attempt, next.earlier.len()), (2, 1));
        next.instance_id = Some("i-2".to_string());
        next.requests = claim_on("i-2", false).requests;
        let mut i2 = instance("i-2");
        i2.launched = Some(3_000);
        let last = ended(&next, &i2, &finished("succeeded", None), 3_000 + 3_600);
        assert_eq!(last.market, "on-demand");
        let all = attempts(&next, Some(last));
        assert_eq!(all.attempts.len(), 2);
        // Half an hour of spot and an hour on demand.
        assert!((all.cost_usd.unwrap() - (0.335 + 1.861)).abs() < 1e-9);
    }
}
