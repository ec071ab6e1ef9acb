//! Each command: its arguments turned into the library's inputs, the
//! library called, its values handed to [`super::reports`].

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;

#[cfg(feature = "smoke")]
use super::reports::Progress;
use super::reports::{self, print_json};
use super::{Cli, Command, Format, JobPlace, ListWhat, ReportFormat};
use crate::check::golden;
use crate::check::validate;
use crate::compile::explain::Explanation;
use crate::compile::library::{Library, Project};
use crate::compile::listing;
use crate::compile::model::DEFAULT_PROFILE;
use crate::compile::overrides::Override;
use crate::compile::profile::load;
use crate::compile::{Compiled, compile};
use crate::diagnostics::{Error, Result};

fn library(cli: &Cli) -> Result<(Library, Option<Project>)> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::io(".", "find the current directory", e))?;
    Library::discover(&cwd, &cli.profiles, &cli.snippets)
}

/// A profile argument is a name, or a path when it names a .yaml file.
fn profile_name(library: &mut Library, arg: Option<&str>) -> Result<String> {
    match arg {
        None => Ok(DEFAULT_PROFILE.to_string()),
        Some(a) if a.ends_with(".yaml") && Path::new(a).is_file() => {
            library.add_profile_file(Path::new(a))
        }
        Some(a) => Ok(a.to_string()),
    }
}

/// The profile a job was launched with, compiled for it, and the folder
/// that holds the job's directory on this host.
fn job_place(library: &mut Library, job: &str, place: &JobPlace) -> Result<(Compiled, PathBuf)> {
    let name = profile_name(library, place.profile.as_deref())?;
    let mut overrides = place.sets.parse()?;
    overrides.push(Override::parse(&format!("job_id={job}"))?);
    let compiled = compile(library, &name, &overrides)?;
    let dir = if place.local {
        local_jobs_dir(&compiled, place.efs.as_deref())?
    } else {
        let j = &compiled.profile.profile.job;
        PathBuf::from(j.host_log_dir.as_deref().unwrap_or(&j.log_dir))
    };
    Ok((compiled, dir))
}

#[cfg(feature = "smoke")]
fn local_jobs_dir(compiled: &Compiled, efs: Option<&Path>) -> Result<PathBuf> {
    crate::smoke::local::jobs_dir(compiled, efs)
}

#[cfg(not(feature = "smoke"))]
fn local_jobs_dir(_: &Compiled, _: Option<&Path>) -> Result<PathBuf> {
    Err(Error::Usage {
        message: "this build has no local instances (the `smoke` feature)".to_string(),
    })
}

/// `logs JOB`: the run's log, and with `follow` what it gains until the
/// run's final status.
fn logs(jobs: &Path, job: &str, run: Option<u32>, follow: bool) -> Result<i32> {
    use std::io::{Read as _, Seek as _};
    let dir = jobs.join(job);
    let path = crate::aws::status::log_of(&dir, run)?;
    let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, "open", e))?;
    let mut offset = 0u64;
    loop {
        let mut text = Vec::new();
        file.seek(std::io::SeekFrom::Start(offset))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(|e| Error::io(&path, "read", e))?;
        offset += text.len() as u64;
        reports::write_stdout(&text)?;
        if !follow || path.parent() != Some(dir.as_path()) {
            return Ok(0);
        }
        if crate::aws::status::run_ended(&dir) {
            // What the finalizer appended last.
            let mut rest = Vec::new();
            let _ = file
                .seek(std::io::SeekFrom::Start(offset))
                .and_then(|_| file.read_to_end(&mut rest));
            reports::write_stdout(&rest)?;
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

pub(super) fn execute(cli: Cli) -> Result<i32> {
    // The two commands about the command line itself need no library.
    match &cli.command {
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "bootforge", &mut out);
            reports::write_stdout(&out)?;
            return Ok(0);
        }
        Command::Man { dir } => {
            man(dir.as_deref())?;
            return Ok(0);
        }
        _ => {}
    }
    let (mut library, project) = library(&cli)?;
    match &cli.command {
        Command::Completions { .. } | Command::Man { .. } => Ok(0),
        Command::Compile {
            profile,
            sets,
            format,
            output,
        } => {
            let name = profile_name(&mut library, profile.as_deref())?;
            let compiled = compile(&library, &name, &sets.parse()?)?;
            // As gzip does, compressed bytes are not written to a terminal:
            // there the readable user-data (what cloud-init reads once it
            // has decompressed them), saying so; a pipe or -o gets the bytes.
            let to_terminal = output.is_none() && std::io::stdout().is_terminal();
            let bytes = match format {
                Format::Payload if compiled.payload.gzip && to_terminal => {
                    eprintln!(
                        "bootforge: the payload EC2 receives is this user-data gzipped ({} bytes); pipe it or use -o FILE for those bytes",
                        compiled.payload.bytes.len()
                    );
                    compiled.payload.raw
                }
                Format::Payload => compiled.payload.bytes,
                Format::CloudConfig => compiled.cloud_config.into_bytes(),
                Format::Mime => compiled.mime()?.into_bytes(),
                Format::Base64 => format!("{}\n", compiled.payload.base64()).into_bytes(),
            };
            match output {
                Some(path) => golden::write_atomically(path, &bytes)?,
                None => reports::write_stdout(&bytes)?,
            }
            Ok(0)
        }
        Command::Explain {
            profile,
            sets,
            json,
        } => {
            let name = profile_name(&mut library, profile.as_deref())?;
            let explanation = Explanation::new(&compile(&library, &name, &sets.parse()?)?);
            if *json {
                print_json(&explanation);
            } else {
                println!("{explanation}");
            }
            Ok(0)
        }
        Command::Validate {
            names,
            sets,
            strict,
            format,
        } => {
            let names = names
                .iter()
                .map(|n| profile_name(&mut library, Some(n)))
                .collect::<Result<Vec<_>>>()?;
            let all = validate::validate_all(&library, &names, &sets.parse()?)?;
            let failing = validate::fails(&all, *strict);
            match format {
                ReportFormat::Json => print_json(&all),
                ReportFormat::Text => reports::print_diagnostics(&all, failing, *strict),
            }
            Ok(i32::from(failing))
        }
        Command::Check {
            bless,
            golden: dir,
            json,
        } => {
            let dir = dir
                .clone()
                .unwrap_or_else(|| golden::default_dir(project.as_ref()));
            let report = golden::check(&library, &dir, *bless)?;
            if *json {
                print_json(&report);
            } else {
                reports::print_drift(&report, &dir);
            }
            Ok(i32::from(!report.drift.is_empty()))
        }
        #[cfg(feature = "smoke")]
        Command::Smoke {
            profile,
            scenarios,
            sets,
            keep,
            efs,
            boot_timeout,
            ordering,
            force,
            json,
        } => {
            use crate::smoke;
            let mut progress = Progress::new(*json);
            if profile == "image" {
                let build = smoke::build_image(*force, &mut progress.sink())?;
                drop(progress);
                if *json {
                    print_json(&build);
                } else if build.built {
                    println!("built {} in {:.0}s", build.image, build.seconds);
                } else {
                    println!("{} is up to date", build.image);
                }
                return Ok(0);
            }
            let name = profile_name(&mut library, Some(profile))?;
            let chosen = smoke::chosen(scenarios, efs.is_some())?;
            let overrides = sets.parse()?;
            let options = smoke::Options {
                keep: keep.clone(),
                deadline: boot_timeout.map(std::time::Duration::from_secs),
                efs: efs.clone(),
                ordering: smoke::Ordering::named(ordering)?,
            };
            let mut reports = Vec::new();
            for scenario in chosen {
                let report = smoke::run(
                    &library,
                    &name,
                    scenario,
                    &overrides,
                    &options,
                    &mut progress.sink(),
                )?;
                if !*json {
                    progress.event(crate::progress::Event::Progress(report.to_string()));
                }
                reports.push(report);
            }
            drop(progress);
            if *json {
                print_json(&reports);
            }
            Ok(i32::from(!reports.iter().all(smoke::Report::passed)))
        }
        #[cfg(feature = "aws")]
        Command::Launch {
            profile,
            sets,
            dry_run,
            wait,
            follow,
            rerun,
            local,
            efs,
            poll,
            ec2_poll,
            status_grace,
            json,
        } => {
            let name = profile_name(&mut library, Some(profile))?;
            let compiled = compile(&library, &name, &sets.parse()?)?;
            let seconds = |s: f64| std::time::Duration::from_secs_f64(s.max(0.05));
            let request = crate::aws::job::Request {
                wait: *wait,
                follow: *follow,
                rerun: *rerun,
                intervals: crate::aws::wait::Intervals {
                    status: seconds(*poll),
                    ec2: seconds(*ec2_poll),
                    status_grace: std::time::Duration::from_secs_f64(status_grace.max(0.0)),
                },
            };
            if *local {
                return aws::launch_local(&compiled, *dry_run, request, efs.clone(), *json);
            }
            aws::launch(&compiled, *dry_run, request, *json)
        }
        #[cfg(feature = "aws")]
        Command::Status { job, place, json } => {
            let (compiled, jobs) = job_place(&mut library, job, place)?;
            aws::status(&compiled, &jobs, place.local, *json)
        }
        Command::Logs {
            job,
            place,
            follow,
            run,
        } => {
            let (_, jobs) = job_place(&mut library, job, place)?;
            logs(&jobs, job, *run, *follow)
        }
        #[cfg(feature = "aws")]
        Command::Ps {
            local: true, json, ..
        } => aws::ps_local(*json),
        #[cfg(feature = "aws")]
        Command::Ps { region, json, .. } => aws::ps(
            &crate::aws::job::region(&library, region.region.as_deref())?,
            *json,
        ),
        #[cfg(feature = "aws")]
        Command::Terminate {
            ids,
            job,
            local: true,
            spot_notice,
            warning,
            json,
            ..
        } => aws::terminate_local(ids, job.as_deref(), spot_notice.then_some(*warning), *json),
        #[cfg(feature = "aws")]
        Command::Terminate {
            ids,
            job,
            region,
            sets,
            json,
            ..
        } => aws::terminate(
            &library,
            &sets.parse()?,
            &crate::aws::job::region(&library, region.region.as_deref())?,
            (ids, job.as_deref()),
            *json,
        ),
        #[cfg(feature = "aws")]
        Command::Reap { yes, region, json } => aws::reap(
            &crate::aws::job::region(&library, region.region.as_deref())?,
            *yes,
            *json,
        ),
        Command::Cost {
            profile,
            sets,
            json,
        } => {
            let name = profile_name(&mut library, Some(profile))?;
            let loaded = load(&library, &name, &sets.parse()?)?;
            let prices = spot_prices(&loaded.profile);
            let report = crate::aws::cost::cost(&name, &loaded.profile, &prices);
            if *json {
                print_json(&report);
            } else {
                reports::print_cost(&report);
            }
            Ok(0)
        }
        Command::IamPolicy { profile, sets } => {
            let name = profile_name(&mut library, Some(profile))?;
            let loaded = load(&library, &name, &sets.parse()?)?;
            print_json(&crate::aws::iam::iam_policy(&name, &loaded.profile));
            Ok(0)
        }
        Command::Schema => {
            print_json(&crate::check::schema::profile_schema(&library));
            Ok(0)
        }
        Command::List { what, json } => {
            let rows = match what {
                ListWhat::Profiles => listing::profiles(&library),
                ListWhat::Snippets => listing::snippets(&library),
            };
            if *json {
                print_json(&rows);
            } else {
                reports::print_list(&rows);
            }
            Ok(0)
        }
    }
}

/// The spot prices `cost` shows for `profile`: EC2's, when the profile buys
/// spot and EC2 answers within a few seconds; else the catalog's, saying why.
fn spot_prices(profile: &crate::compile::model::Profile) -> crate::aws::cost::SpotPrices {
    use crate::aws::cost::SpotPrices;
    if !profile.instance.market.uses_spot() {
        return SpotPrices::Catalog(None);
    }
    #[cfg(feature = "aws")]
    {
        let asked = aws::runtime().and_then(|rt| {
            rt.block_on(async {
                let client = crate::aws::ec2::client(&profile.instance.region).await;
                let call = crate::aws::ec2::spot_prices(
                    &client,
                    &profile.instance.types,
                    profile.instance.availability_zone.as_deref(),
                );
                tokio::time::timeout(SPOT_PRICE_BOUND, call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Environment {
                            message: format!("no answer in {}s", SPOT_PRICE_BOUND.as_secs()),
                            help: None,
                        })
                    })
            })
        });
        match asked {
            Ok(quotes) => SpotPrices::Ec2(quotes),
            Err(e) => SpotPrices::Catalog(Some(
                e.to_string().lines().next().unwrap_or_default().to_string(),
            )),
        }
    }
    #[cfg(not(feature = "aws"))]
    SpotPrices::Catalog(Some("this build has no AWS client".to_string()))
}

/// How long `cost` waits for EC2's spot prices before it shows the catalog's.
#[cfg(feature = "aws")]
const SPOT_PRICE_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// `man`: the page of `bootforge` on stdout, or with `dir` one page per
/// command (`bootforge-launch.1`…) written there.
fn man(dir: Option<&Path>) -> Result<()> {
    let command = Cli::command();
    let render = |cmd: clap::Command, path: Option<&Path>| -> Result<()> {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .map_err(|e| Error::io("man page", "render", e))?;
        match path {
            Some(path) => golden::write_atomically(path, &page),
            None => reports::write_stdout(&page),
        }
    };
    let Some(dir) = dir else {
        return render(command, None);
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    let pages = command.get_subcommands().count() + 1;
    for sub in command.get_subcommands() {
        let name = format!("bootforge-{}", sub.get_name());
        // A subcommand's page is titled after its file, its synopsis shows
        // the command as typed.
        let page = sub
            .clone()
            .display_name(name.clone())
            .version(env!("CARGO_PKG_VERSION"))
            .bin_name(format!("bootforge {}", sub.get_name()));
        render(page, Some(&dir.join(format!("{name}.1"))))?;
    }
    render(command, Some(&dir.join("bootforge.1")))?;
    println!("wrote {pages} pages into {}", dir.display());
    Ok(())
}

/// The commands that talk to EC2: each runs the library's async calls on a
/// runtime of its own.
#[cfg(feature = "aws")]
mod aws {
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
            let mut rows = reap::alive(&crate::smoke::instances::instances(&[])?, now());
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
    pub fn status(
        compiled: &Compiled,
        jobs: &std::path::Path,
        local: bool,
        json: bool,
    ) -> Result<i32> {
        let job = &compiled.profile.profile.job;
        let files = crate::aws::status::read(jobs, &job.id)?;
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
            reports::print_status(&status);
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
            let instances: Vec<ec2::Instance> =
                expired.iter().map(|e| e.instance.clone()).collect();
            let done = reap::terminate_by_profile(&client, &instances).await;
            Ok(report_terminations(&done, Some(listed), json))
        })
    }
}
