//! Local instances as a pass of `advance` sees them (`advance --local`):
//! one look at the engine for every job, a gone container's StateReason as
//! the rehearsal recorded it, its console from its host folder, a next
//! attempt or a queued job started as `launch --local` starts one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::boot::mounts;
use super::instances::{folder, gone, instances, terminate};
use super::local::{efs_root, jobs_dir, start_attempt, state_reason};
use crate::aws::advance::{Fleet, Options, Pass, pass};
use crate::aws::claim::{Claim, Claims};
use crate::aws::ec2::Instance;
use crate::aws::operate::Started;
use crate::aws::reap::Termination;
use crate::aws::wait::console_status;
use crate::compile::Compiled;
use crate::compile::library::Library;
use crate::diagnostics::Result;
use crate::progress::Event;

/// The local engine, with the folder that plays the EFS.
struct Local {
    efs: PathBuf,
}

impl Fleet for Local {
    async fn look(&mut self, _: &[(&str, &Claim)]) -> Result<HashMap<String, Instance>> {
        Ok(instances(&[])?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect())
    }

    fn missing(&self, id: &str, claim: &Claim) -> Instance {
        let mut i = gone(id, claim);
        i.state_reason = state_reason(claim);
        i
    }

    async fn console(&mut self, instance: &Instance, claim: &Claim) -> Option<Json> {
        let text = std::fs::read_to_string(folder(claim).join("log/cloud-init-output.log")).ok()?;
        console_status(&text, &instance.id)
    }

    async fn start(
        &mut self,
        compiled: &Compiled,
        claims: &Claims,
        claim: Claim,
        on: &mut dyn FnMut(Event),
    ) -> Result<Started> {
        start_attempt(compiled, claims, claim, &self.efs, &mounts(compiled), on)
    }

    async fn terminate(&mut self, instances: &[(Instance, Option<String>)]) -> Vec<Termination> {
        let these: Vec<Instance> = instances.iter().map(|(i, _)| i.clone()).collect();
        terminate(&these)
    }
}

/// One pass of `advance --local` over the jobs of `compiled`'s profile in
/// the EFS folder `efs` (the default one when `None`).
pub fn advance(
    library: &Library,
    compiled: &Compiled,
    efs: Option<&Path>,
    options: Options,
    on: &mut dyn FnMut(Event),
) -> Result<Pass> {
    let mut fleet = Local {
        efs: efs_root(compiled, efs)?,
    };
    let jobs = jobs_dir(compiled, efs)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::diagnostics::Error::Environment {
            message: format!("cannot start the async runtime: {e}"),
            help: None,
        })?;
    runtime.block_on(pass(&mut fleet, library, &jobs, options, on))
}
