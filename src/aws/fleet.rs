//! EC2 as a pass of `advance` sees it: one DescribeInstances by tag for all
//! of a region's jobs (terminated instances included), one by id for the
//! claimed instances the tag filter does not show yet, a next attempt
//! launched without waiting on it, overdue instances terminated per
//! profile. The pass itself is [`crate::aws::advance`].

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::aws::advance::{Fleet, Options, Pass, pass};
use crate::aws::claim::{Claim, Claims};
use crate::aws::ec2::{self, Instance};
use crate::aws::operate::Started;
use crate::aws::reap::Termination;
use crate::compile::Compiled;
use crate::compile::library::Library;
use crate::diagnostics::Result;
use crate::progress::Event;

/// EC2 as a pass sees it: one client per region the jobs are in.
pub(crate) struct Ec2 {
    region: String,
    clients: HashMap<String, aws_sdk_ec2::Client>,
    /// The DescribeInstances calls the pass made.
    pub describes: usize,
}

impl Ec2 {
    pub(crate) fn new(region: &str) -> Ec2 {
        Ec2 {
            region: region.to_string(),
            clients: HashMap::new(),
            describes: 0,
        }
    }

    async fn client(&mut self, region: Option<&str>) -> aws_sdk_ec2::Client {
        let region = region.unwrap_or(&self.region).to_string();
        if let Some(c) = self.clients.get(&region) {
            return c.clone();
        }
        let c = ec2::client(&region).await;
        self.clients.insert(region, c.clone());
        c
    }
}

impl Fleet for Ec2 {
    async fn look(&mut self, claimed: &[(&str, &Claim)]) -> Result<HashMap<String, Instance>> {
        let mut regions: Vec<Option<&str>> =
            claimed.iter().map(|(_, c)| c.region.as_deref()).collect();
        regions.sort();
        regions.dedup();
        let mut seen = HashMap::new();
        for region in regions {
            let client = self.client(region).await;
            self.describes += 1;
            for i in ec2::every_bootforge_instance(&client).await? {
                seen.insert(i.id.clone(), i);
            }
            // A new instance may be missing from filtered answers a while.
            let missing: Vec<String> = claimed
                .iter()
                .filter(|(id, c)| c.region.as_deref() == region && !seen.contains_key(*id))
                .map(|(id, _)| id.to_string())
                .collect();
            if !missing.is_empty() {
                self.describes += 1;
                for i in ec2::with_ids(&client, &missing).await? {
                    seen.insert(i.id.clone(), i);
                }
            }
        }
        Ok(seen)
    }

    fn missing(&self, id: &str, claim: &Claim) -> Instance {
        crate::aws::operate::from_claim(id, claim)
    }

    async fn console(&mut self, instance: &Instance, claim: &Claim) -> Option<Json> {
        let client = self.client(claim.region.as_deref()).await;
        let text = ec2::console_output(&client, &instance.id).await.ok()?;
        crate::aws::wait::console_status(&text, &instance.id)
    }

    async fn start(
        &mut self,
        compiled: &Compiled,
        claims: &Claims,
        claim: Claim,
        on: &mut dyn FnMut(Event),
    ) -> Result<Started> {
        let client = self
            .client(Some(&compiled.profile.profile.instance.region))
            .await;
        crate::aws::operate::launch_run(&client, compiled, claims, claim, on, None).await
    }

    async fn terminate(&mut self, instances: &[(Instance, Option<String>)]) -> Vec<Termination> {
        let mut done = Vec::new();
        let mut regions: Vec<Option<String>> = instances.iter().map(|(_, r)| r.clone()).collect();
        regions.sort();
        regions.dedup();
        for region in regions {
            let client = self.client(region.as_deref()).await;
            let these: Vec<Instance> = instances
                .iter()
                .filter(|(_, r)| *r == region)
                .map(|(i, _)| i.clone())
                .collect();
            done.extend(crate::aws::reap::terminate_by_profile(&client, &these).await);
        }
        done
    }
}

/// One pass of `advance` over the jobs of `compiled`'s profile's jobs
/// folder (its `host_log_dir`), their instances on EC2.
pub async fn advance(
    library: &Library,
    compiled: &Compiled,
    options: Options,
    on: &mut dyn FnMut(Event),
) -> Result<(Pass, usize)> {
    let jobs_dir = crate::aws::claim::jobs_dir(compiled);
    let mut fleet = Ec2::new(&compiled.profile.profile.instance.region);
    let done = pass(&mut fleet, library, &jobs_dir, options, on).await?;
    Ok((done, fleet.describes))
}
