//! Each command: its arguments turned into the library's inputs, the
//! library called, its values handed to [`super::reports`].

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;

#[cfg(feature = "aws")]
use super::instances as aws;
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
    // Followed from its launch, a run's log comes once the instance has
    // booted and mounted the EFS.
    let mut told = false;
    let path = loop {
        match crate::aws::log::log_of(&dir, run) {
            Ok(path) => break path,
            Err(_) if follow && run.is_none() && crate::aws::log::log_may_come(&dir) => {
                if !std::mem::replace(&mut told, true) {
                    eprintln!(
                        "waiting for the instance to write {}",
                        dir.join("job.log").display()
                    );
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
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
        if crate::aws::log::run_ended(&dir) {
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

/// `logs JOB --offset N|--tail BYTES [--json]`: whole lines of the log
/// from a byte offset, or its tail.
fn log_chunk(
    jobs: &Path,
    job: &str,
    run: Option<u32>,
    (offset, tail): (Option<u64>, Option<u64>),
    json: bool,
) -> Result<i32> {
    let dir = jobs.join(job);
    let path = crate::aws::log::log_of(&dir, run)?;
    let ended = path.parent() != Some(dir.as_path()) || crate::aws::log::run_ended(&dir);
    let chunk = crate::aws::log::chunk(&path, offset, tail, ended)?;
    if json {
        print_json(&chunk);
    } else {
        reports::write_stdout(chunk.text.as_bytes())?;
    }
    Ok(0)
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
            offset,
            tail,
            json,
        } => {
            let (_, jobs) = job_place(&mut library, job, place)?;
            if *json || offset.is_some() || tail.is_some() {
                return log_chunk(&jobs, job, *run, (*offset, *tail), *json);
            }
            logs(&jobs, job, *run, *follow)
        }
        Command::Jobs {
            place,
            since,
            state,
            limit,
            json,
        } => {
            let name = profile_name(&mut library, place.profile.as_deref())?;
            let compiled = compile(&library, &name, &place.sets.parse()?)?;
            let jobs_dir = if place.local {
                local_jobs_dir(&compiled, place.efs.as_deref())?
            } else {
                crate::aws::claim::jobs_dir(&compiled)
            };
            let which = match state {
                super::JobState::Live => crate::aws::jobs::Which::Live,
                super::JobState::Ended => crate::aws::jobs::Which::Ended,
                super::JobState::All => crate::aws::jobs::Which::All,
            };
            let now = crate::clock::now();
            let window = crate::aws::jobs::window(since)?;
            let listing =
                crate::aws::jobs::list(&jobs_dir, which, now.saturating_sub(window), *limit, now)?;
            if *json {
                print_json(&listing);
            } else {
                super::job_reports::print_jobs(&listing);
            }
            Ok(0)
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
        Command::Advance {
            place,
            ack,
            watch,
            every,
            status_grace,
            budget,
            json,
        } => {
            let name = profile_name(&mut library, place.profile.as_deref())?;
            let compiled = compile(&library, &name, &place.sets.parse()?)?;
            let seconds = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
            let request = aws::AdvanceRequest {
                acks: ack,
                watch: *watch,
                every: every.map(seconds),
                options: crate::aws::advance::Options {
                    status_grace: seconds(*status_grace),
                    budget: seconds(*budget),
                    every: every
                        .map(seconds)
                        .or_else(|| watch.then_some(aws::WATCH_EVERY)),
                },
                json: *json,
            };
            let efs = place.local.then_some(place.efs.as_deref());
            aws::advance(&library, &compiled, efs, &request)
        }
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
        Command::Schema { document } => {
            print_json(&super::documents::schema_of(*document, &library)?);
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
