//! The commands that talk to EC2 (or to the local engine that plays it):
//! each runs the library's async calls on a runtime of its own, and hands
//! its values to [`super::reports`].

use super::reports::{self, Progress, print_json};
use crate::aws::ec2;
use crate::aws::job::{self, Request};
use crate::aws::reap;
use crate::clock::now;
use crate::compile::Compiled;
use crate::diagnostics::{Error, Result};

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Environment {
            message: format!("cannot start the async runtime: {e}"),
            help: None,
        })
}

pub fn launch(compiled: &Compiled, dry_run: bool, request: Request, json: bool) -> Result<i32> {
    let mut progress = Progress::new(json);
    runtime()?.block_on(async {
        let client = ec2::client(&compiled.profile.profile.instance.region).await;
        if dry_run {
            let answer = job::dry_run(&client, compiled, &mut progress.sink()).await?;
            drop(progress);
            return Ok(print_dry_run(&answer, json));
        }
        let report = job::launch(&client, compiled, request, &mut progress.sink()).await?;
        drop(progress);
        Ok(print_report(&report, json))
    })
}

/// Prints a launch's report; its exit code.
fn print_report(report: &crate::aws::job::Report, json: bool) -> i32 {
    if json {
        print_json(report);
    } else {
        reports::print_launch(report);
    }
    report.exit_code()
}

fn print_dry_run(answer: &ec2::DryRun, json: bool) -> i32 {
    if json {
        print_json(answer);
    } else {
        println!("{}", answer.message);
    }
    i32::from(!answer.allowed)
}

#[cfg(not(feature = "smoke"))]
fn no_smoke() -> Error {
    Error::Usage {
        message: "this bootforge was built without the `smoke` feature, which --local needs"
            .to_string(),
    }
}

#[cfg(feature = "smoke")]
pub fn launch_local(
    compiled: &Compiled,
    dry_run: bool,
    request: Request,
    efs: Option<std::path::PathBuf>,
    json: bool,
) -> Result<i32> {
    use crate::smoke::local;
    if dry_run {
        return Ok(print_dry_run(
            &local::dry_run(compiled, efs.as_deref())?,
            json,
        ));
    }
    let request = local::Request {
        efs,
        wait: request.wait,
        follow: request.follow,
        rerun: request.rerun,
        intervals: request.intervals,
    };
    let mut progress = Progress::new(json);
    let report = local::launch(compiled, &request, &mut progress.sink())?;
    drop(progress);
    Ok(print_report(&report, json))
}

#[cfg(not(feature = "smoke"))]
pub fn launch_local(
    _: &Compiled,
    _: bool,
    _: Request,
    _: Option<std::path::PathBuf>,
    _: bool,
) -> Result<i32> {
    Err(no_smoke())
}

pub fn ps_local(json: bool) -> Result<i32> {
    #[cfg(feature = "smoke")]
    {
        // As EC2's ps: live instances only (a container that has
        // powered off may be listed until the engine removes it).
        let live: Vec<ec2::Instance> = crate::smoke::instances::instances(&[])?
            .into_iter()
            .filter(|i| i.state != "terminated")
            .collect();
        let mut rows = reap::alive(&live, now());
        // A container costs nothing: no price stands for a GPU here.
        rows.iter_mut().for_each(|r| r.cost_so_far = None);
        if json {
            print_json(&rows);
        } else {
            reports::print_ps(&rows, "this machine (local)");
        }
        Ok(0)
    }
    #[cfg(not(feature = "smoke"))]
    {
        let _ = json;
        Err(no_smoke())
    }
}

/// `terminate --local`; with `spot_notice` (the warning's seconds), a
/// spot interruption rehearsed first.
pub fn terminate_local(
    ids: &[String],
    job: Option<&str>,
    spot_notice: Option<u64>,
    json: bool,
) -> Result<i32> {
    #[cfg(feature = "smoke")]
    {
        use crate::smoke::instances;
        let targets = instances::targets(ids, job)?;
        let done = match spot_notice {
            Some(warning) => {
                instances::spot_interrupt(&targets, std::time::Duration::from_secs(warning))?
            }
            None => instances::end_on_purpose(&targets),
        };
        Ok(report_terminations(&done, None, json))
    }
    #[cfg(not(feature = "smoke"))]
    {
        let _ = (ids, job, spot_notice, json);
        Err(no_smoke())
    }
}

/// `status JOB`: the job's directory, and the instance's state from
/// EC2 or the local engine.
pub fn status(compiled: &Compiled, jobs: &std::path::Path, local: bool, json: bool) -> Result<i32> {
    let job = &compiled.profile.profile.job;
    let mut files = crate::aws::status::read(jobs, &job.id)?;
    let index = crate::aws::index::Index::of(jobs);
    if files.claim.queued.is_some() {
        files.place = index.live()?.position(&job.id);
    }
    files.late = index.last_pass().and_then(|p| p.late(now()));
    let state = match files.claim.instance_id.clone() {
        None => None,
        Some(id) if local => local_state(&id)?,
        Some(id) => {
            let region = &compiled.profile.profile.instance.region;
            let asked = runtime()?.block_on(async {
                let client = ec2::client(region).await;
                ec2::get(&client, &id).await
            });
            match asked {
                Ok(found) => Some(found.map_or("terminated".to_string(), |i| i.state)),
                Err(e) => {
                    eprintln!("warning: EC2 did not say how {id} is: {e}");
                    None
                }
            }
        }
    };
    let max_attempts = job.retry.as_ref().map_or(1, |r| r.attempts);
    let status = crate::aws::status::summarize(files, state, max_attempts, now());
    if json {
        print_json(&status);
    } else {
        super::job_reports::print_status(&status);
    }
    Ok(0)
}

#[cfg(feature = "smoke")]
fn local_state(id: &str) -> Result<Option<String>> {
    Ok(Some(
        crate::smoke::instances::get(id)?.map_or("terminated".to_string(), |i| i.state),
    ))
}

#[cfg(not(feature = "smoke"))]
fn local_state(_: &str) -> Result<Option<String>> {
    Err(no_smoke())
}

pub fn ps(region: &str, json: bool) -> Result<i32> {
    runtime()?.block_on(async {
        let client = ec2::client(region).await;
        let rows = reap::alive(&ec2::bootforge_instances(&client).await?, now());
        if json {
            print_json(&rows);
        } else {
            reports::print_ps(&rows, region);
        }
        Ok(0)
    })
}

/// Terminates `targets`; exit code 1 when EC2 refused some.
/// Prints what terminating did (with reap's `expired` list); the exit
/// code: 1 when some could not be terminated.
fn report_terminations(
    done: &[reap::Termination],
    expired: Option<serde_json::Value>,
    json: bool,
) -> i32 {
    if json {
        let mut doc = serde_json::json!({
            "terminated": done.iter().filter(|t| t.terminated).map(|t| &t.instance_id).collect::<Vec<_>>(),
            "refused": done.iter().filter(|t| !t.terminated).collect::<Vec<_>>(),
        });
        if let Some(expired) = expired {
            doc["expired"] = expired;
        }
        print_json(&doc);
    } else if done.is_empty() {
        println!("nothing to terminate");
    } else {
        reports::print_terminations(done);
    }
    i32::from(done.iter().any(|t| !t.terminated))
}

pub fn terminate(
    library: &crate::Library,
    overrides: &[crate::compile::overrides::Override],
    region: &str,
    (ids, job): (&[String], Option<&str>),
    json: bool,
) -> Result<i32> {
    runtime()?.block_on(async {
        let client = ec2::client(region).await;
        let targets = reap::targets(&client, region, ids, job).await?;
        use crate::aws::job::record_ended_on_purpose;
        record_ended_on_purpose(
            library,
            overrides,
            &targets.iter().collect::<Vec<_>>(),
            true,
        );
        let done = reap::terminate_by_profile(&client, &targets).await;
        let refused: Vec<&ec2::Instance> = targets
            .iter()
            .filter(|i| done.iter().any(|t| t.instance_id == i.id && !t.terminated))
            .collect();
        record_ended_on_purpose(library, overrides, &refused, false);
        Ok(report_terminations(&done, None, json))
    })
}

/// How often `advance --watch` passes when not told.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// What `advance` was asked.
pub struct AdvanceRequest<'a> {
    pub acks: &'a [String],
    pub watch: bool,
    pub every: Option<std::time::Duration>,
    pub options: crate::aws::advance::Options,
    pub json: bool,
}

/// `advance`: with `--ack`, the ends delivered; else one pass (with
/// `--watch`, one every interval, each ended job acknowledged once
/// printed). `efs`: for `--local`, the EFS folder (`Some(None)`: the
/// default one).
pub fn advance(
    library: &crate::Library,
    compiled: &Compiled,
    efs: Option<Option<&std::path::Path>>,
    request: &AdvanceRequest,
) -> Result<i32> {
    let jobs_dir = match efs {
        Some(efs) => local_jobs_dir(compiled, efs)?,
        None => crate::aws::claim::jobs_dir(compiled),
    };
    if !request.acks.is_empty() {
        let acks = request
            .acks
            .iter()
            .map(|a| crate::aws::report::parse_ack(a))
            .collect::<Result<Vec<_>>>()?;
        for unknown in crate::aws::report::acknowledge_all(&jobs_dir, &acks)? {
            eprintln!("warning: {unknown}: no recorded end of that run to acknowledge");
        }
        return Ok(0);
    }
    loop {
        let mut progress = Progress::new(true);
        let passed = match efs {
            Some(efs) => local_pass(
                library,
                compiled,
                efs,
                request.options,
                &mut progress.sink(),
            )
            .map(|p| (p, None)),
            None => runtime()?.block_on(async {
                crate::aws::fleet::advance(library, compiled, request.options, &mut progress.sink())
                    .await
                    .map(|(p, d)| (p, Some(d)))
            }),
        };
        drop(progress);
        match passed {
            Ok((pass, describes)) => {
                for problem in &pass.problems {
                    eprintln!("warning: {problem}");
                }
                if request.json {
                    for r in &pass.ended {
                        println!(
                            "{}",
                            serde_json::to_string(r).expect("reports serialize to JSON")
                        );
                    }
                } else {
                    reports::print_advance(&pass, describes);
                }
                if !request.watch {
                    return Ok(0);
                }
                // Printed is delivered, for the daemon.
                let printed: Vec<(String, u32)> =
                    pass.ended.iter().map(|r| (r.job.clone(), r.run)).collect();
                if let Err(e) = crate::aws::report::acknowledge_all(&jobs_dir, &printed) {
                    eprintln!("warning: {e}");
                }
            }
            // A daemon outlives what one pass meets (EC2 unreachable…).
            Err(e) if request.watch => eprintln!("warning: this pass failed: {e}"),
            Err(e) => return Err(e),
        }
        std::thread::sleep(request.every.unwrap_or(WATCH_EVERY));
    }
}

#[cfg(feature = "smoke")]
fn local_jobs_dir(
    compiled: &Compiled,
    efs: Option<&std::path::Path>,
) -> Result<std::path::PathBuf> {
    crate::smoke::local::jobs_dir(compiled, efs)
}

#[cfg(not(feature = "smoke"))]
fn local_jobs_dir(_: &Compiled, _: Option<&std::path::Path>) -> Result<std::path::PathBuf> {
    Err(no_smoke())
}

#[cfg(feature = "smoke")]
fn local_pass(
    library: &crate::Library,
    compiled: &Compiled,
    efs: Option<&std::path::Path>,
    options: crate::aws::advance::Options,
    on: &mut dyn FnMut(crate::progress::Event),
) -> Result<crate::aws::advance::Pass> {
    crate::smoke::fleet::advance(library, compiled, efs, options, on)
}

#[cfg(not(feature = "smoke"))]
fn local_pass(
    _: &crate::Library,
    _: &Compiled,
    _: Option<&std::path::Path>,
    _: crate::aws::advance::Options,
    _: &mut dyn FnMut(crate::progress::Event),
) -> Result<crate::aws::advance::Pass> {
    Err(no_smoke())
}

pub fn reap(region: &str, yes: bool, json: bool) -> Result<i32> {
    runtime()?.block_on(async {
        let client = ec2::client(region).await;
        let expired = reap::expired(&ec2::bootforge_instances(&client).await?, now());
        let listed = serde_json::to_value(&expired).unwrap_or_default();
        if !yes || expired.is_empty() {
            if json {
                print_json(
                    &serde_json::json!({ "expired": listed, "terminated": [], "refused": [] }),
                );
            } else {
                reports::print_expired(if yes { &[] } else { &expired }, region);
            }
            return Ok(0);
        }
        let instances: Vec<ec2::Instance> = expired.iter().map(|e| e.instance.clone()).collect();
        let done = reap::terminate_by_profile(&client, &instances).await;
        Ok(report_terminations(&done, Some(listed), json))
    })
}
