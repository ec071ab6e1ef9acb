//! The command line: argv in, text out, exit code back. The only module
//! that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::check::diagnostics::{Error, Result};
use crate::check::golden::{self, Drift};
use crate::check::validate::Severity;
use crate::compile::compile;
use crate::compile::explain::Explanation;
use crate::compile::library::Library;
use crate::compile::profile::{DEFAULT_PROFILE, Override};
use crate::compile::snippet::Snippet;

#[derive(Debug, Parser)]
#[command(
    name = "bootforge",
    version,
    about = "Compile, test and launch the boot payload of one-shot GPU instances on EC2",
    after_help = "Examples:\n  bootforge compile                       print the default profile's payload\n  bootforge explain traffic-sign-gpu      what the payload is made of, and its size\n  bootforge check                         compare every profile with golden/"
)]
struct Cli {
    /// Add profiles from DIR (NAME.yaml files); they override built-in ones of the same name.
    #[arg(long, global = true, value_name = "DIR", env = "BOOTFORGE_PROFILES")]
    profiles: Vec<PathBuf>,
    /// Add snippets from DIR (one directory with a snippet.yaml per snippet).
    #[arg(long, global = true, value_name = "DIR", env = "BOOTFORGE_SNIPPETS")]
    snippets: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a profile's payload (the user-data an instance boots with).
    #[command(
        after_help = "Examples:\n  bootforge compile\n  bootforge compile traffic-sign-gpu --set job_id=run-42 -o user-data\n  bootforge compile g6-quick --format base64"
    )]
    Compile {
        /// A profile name or a path to a .yaml file; the default profile when absent.
        profile: Option<String>,
        #[command(flatten)]
        sets: Sets,
        /// What to print: the payload as launched, only its cloud-config
        /// document, the payload always as multipart MIME, or the payload in base64.
        #[arg(long, value_enum, default_value_t = Format::Payload)]
        format: Format,
        /// Write to FILE instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show the snippets, every value and where it came from, and the payload's size.
    #[command(
        after_help = "Examples:\n  bootforge explain traffic-sign-gpu\n  bootforge explain g6-quick --set job.timeout=30m --json"
    )]
    Explain {
        profile: Option<String>,
        #[command(flatten)]
        sets: Sets,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compile every profile (or those named) and report every problem; silent when all is well.
    #[command(
        after_help = "Examples:\n  bootforge validate\n  bootforge validate traffic-sign-gpu --strict"
    )]
    Validate {
        #[arg(value_name = "PROFILE")]
        names: Vec<String>,
        #[command(flatten)]
        sets: Sets,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        /// text (on stderr) or json (on stdout, with severity, code, file, line, column and path).
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Compare every profile's payload with golden/; exit 1 on drift.
    #[command(
        after_help = "Examples:\n  bootforge check\n  bootforge check --bless     rewrite golden/ after an intended change"
    )]
    Check {
        /// Rewrite the golden files that differ and remove stale ones.
        #[arg(long)]
        bless: bool,
        /// Where the golden files are (default: the project folder's golden/).
        #[arg(long, value_name = "DIR")]
        golden: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Boot a profile's payload under real cloud-init in a container; `smoke image` builds that image.
    #[cfg(feature = "smoke")]
    #[command(
        after_help = "Examples:\n  bootforge smoke image                     build the image (once per recipe; needs root, debootstrap, Docker)\n  bootforge smoke traffic-sign-gpu          every scenario\n  bootforge smoke traffic-sign-gpu --scenario hang --keep /tmp/boot\n  bootforge smoke traffic-sign-gpu --efs ~/recordings    your own pipeline and data as the EFS\n\nScenarios: ok, fail, hang, no-requirements, bad-requirements, no-efs, no-gpu, background-child, runner-killed, stale-run, log-fs-only, efs-hangs-at-finalize."
    )]
    Smoke {
        /// A profile, or `image` to build the smoke image.
        profile: String,
        /// Run only these scenarios (repeatable); all of them when absent.
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        #[command(flatten)]
        sets: Sets,
        /// Keep each boot's files (EFS folder, records, logs) under DIR/SCENARIO.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Boot with DIR as the EFS: your own pipeline, requirements and data
        /// (nothing but the job writes there); scenario `ok` unless told.
        #[arg(long, value_name = "DIR")]
        efs: Option<PathBuf>,
        /// Give up on a boot after SECONDS (default: past the dead-man's switch).
        #[arg(long, value_name = "SECONDS")]
        boot_timeout: Option<u64>,
        /// `smoke image`: rebuild even when an image of the same recipe exists.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Start a job's instance with the compiled payload; `--wait` follows it to the end.
    #[cfg(feature = "aws")]
    #[command(
        after_help = "Examples:\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --dry-run\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --json --wait\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --wait --follow\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --rerun     a new run of a finished job\n\nOne job, one instance: a launch of a job that has an instance attaches to it; of a finished job, reports its outcome.\nExit codes: 0 the job succeeded (or, without --wait, its instance runs), 1 it ended otherwise, 2 usage, environment or AWS error (worth a retry), 3 it wrote no status, 4 its instance was interrupted (spot), 5 its instance failed to launch, 75 the account's quota is reached (try later)."
    )]
    Launch {
        profile: String,
        #[command(flatten)]
        sets: Sets,
        /// Ask EC2 whether the launch is allowed, without launching.
        #[arg(long)]
        dry_run: bool,
        /// Follow the instance to termination and exit with the job's outcome.
        #[arg(long)]
        wait: bool,
        /// With --wait: print the job's log from the EFS as it grows.
        #[arg(long, requires = "wait")]
        follow: bool,
        /// Start a new run of a job whose last run has ended.
        #[arg(long)]
        rerun: bool,
        /// Seconds between two looks at the job's status file and log.
        #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
        poll: f64,
        /// Seconds between two looks at EC2 while waiting (a hundred waiters
        /// at 30 s make 3.3 calls a second, under EC2's rate for the account).
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
        ec2_poll: f64,
        /// Seconds to look for the status after the instance terminated (an
        /// NFS client may show a new file late).
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
        status_grace: f64,
        #[arg(long)]
        json: bool,
    },
    /// List the live instances bootforge launched, with their deadline and cost so far.
    #[cfg(feature = "aws")]
    #[command(after_help = "Examples:\n  bootforge ps\n  bootforge ps --region us-east-2 --json")]
    Ps {
        #[command(flatten)]
        region: RegionArg,
        #[arg(long)]
        json: bool,
    },
    /// Terminate bootforge instances, by id or by job; never anything else.
    #[cfg(feature = "aws")]
    #[command(
        after_help = "Examples:\n  bootforge terminate i-0123456789abcdef0\n  bootforge terminate --job run-42"
    )]
    Terminate {
        /// Instance ids.
        ids: Vec<String>,
        /// Every live instance of this job.
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        #[command(flatten)]
        region: RegionArg,
        #[arg(long)]
        json: bool,
    },
    /// Terminate bootforge instances past their deadline (lists them without --yes).
    #[cfg(feature = "aws")]
    #[command(
        after_help = "Examples:\n  bootforge reap            what would be terminated\n  bootforge reap --yes      terminate them (cron: */10 * * * * bootforge reap --yes)"
    )]
    Reap {
        /// Terminate, rather than list.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        region: RegionArg,
        #[arg(long)]
        json: bool,
    },
    /// The hourly price of a profile's types, its cost at the timeout, and cheaper types that would do.
    #[command(after_help = "Examples:\n  bootforge cost traffic-sign-gpu")]
    Cost {
        profile: String,
        #[command(flatten)]
        sets: Sets,
        #[arg(long)]
        json: bool,
    },
    /// Print the least-privilege IAM policy the launching host needs for a profile.
    #[command(
        name = "iam-policy",
        after_help = "Examples:\n  bootforge iam-policy traffic-sign-gpu > policy.json"
    )]
    IamPolicy {
        profile: String,
        #[command(flatten)]
        sets: Sets,
    },
    /// Print the JSON Schema of the profile format (snippets included), for editors.
    #[command(
        after_help = "Examples:\n  bootforge schema > schema/profile.schema.json\n  # then start a profile with: # yaml-language-server: $schema=../schema/profile.schema.json"
    )]
    Schema,
    /// List profiles or snippets, one line each with its summary.
    #[command(after_help = "Examples:\n  bootforge list\n  bootforge list snippets")]
    List {
        #[arg(value_enum, default_value_t = ListWhat::Profiles)]
        what: ListWhat,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct Sets {
    /// Override a profile value: --set job.timeout=60m (repeatable; typed like the file).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
}

impl Sets {
    fn parse(&self) -> Result<Vec<Override>> {
        self.set.iter().map(|s| Override::parse(s)).collect()
    }
}

#[derive(Debug, clap::Args)]
struct RegionArg {
    /// The region to look in; else AWS_REGION, AWS_DEFAULT_REGION, or the default profile's region.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Payload,
    CloudConfig,
    Mime,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ListWhat {
    Profiles,
    Snippets,
}

/// Runs the command line `args` and returns the process's exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", crate::check::validate::Diagnostic::from(&e));
            e.exit_code()
        }
    }
}

fn library(cli: &Cli) -> Result<(Library, Option<crate::compile::library::Project>)> {
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

fn execute(cli: Cli) -> Result<i32> {
    let (mut library, project) = library(&cli)?;
    match &cli.command {
        Command::Compile {
            profile,
            sets,
            format,
            output,
        } => {
            let name = profile_name(&mut library, profile.as_deref())?;
            let compiled = compile(&library, &name, &sets.parse()?)?;
            let bytes = match format {
                Format::Payload => compiled.payload.bytes,
                Format::CloudConfig => compiled.cloud_config.into_bytes(),
                Format::Mime => {
                    let mut parts = vec![crate::compile::payload::Part {
                        content_type: "text/cloud-config".to_string(),
                        filename: "cloud-config.yaml".to_string(),
                        content: compiled.cloud_config,
                    }];
                    parts.extend(compiled.parts);
                    crate::compile::payload::mime(&parts)?.into_bytes()
                }
                Format::Base64 => format!("{}\n", compiled.payload.base64()).into_bytes(),
            };
            match output {
                Some(path) => golden::write_atomically(path, &bytes)?,
                None => write_stdout(&bytes)?,
            }
            Ok(0)
        }
        Command::Explain {
            profile,
            sets,
            json,
        } => {
            let name = profile_name(&mut library, profile.as_deref())?;
            let compiled = compile(&library, &name, &sets.parse()?)?;
            let explanation = Explanation::new(&compiled);
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
            let overrides = sets.parse()?;
            let names: Vec<String> = if names.is_empty() {
                library.profile_names().map(str::to_string).collect()
            } else {
                let mut resolved = Vec::new();
                for n in names {
                    resolved.push(profile_name(&mut library, Some(n))?);
                }
                resolved
            };
            let mut all = Vec::new();
            for name in &names {
                if library.profile(name).is_none() {
                    // A name nobody provides is a usage error, as in compile.
                    return Err(crate::compile::profile::unknown_profile(&library, name));
                }
                all.extend(crate::check::validate::validate(&library, name, &overrides));
            }
            let failing = all.iter().any(|d| {
                d.severity == Severity::Error || (*strict && d.severity == Severity::Warning)
            });
            match format {
                ReportFormat::Json => print_json(&all),
                ReportFormat::Text => {
                    for d in &all {
                        eprintln!("{d}\n");
                    }
                    if failing {
                        let errors = all.iter().filter(|d| d.severity == Severity::Error).count();
                        eprintln!(
                            "{errors} error(s), {} warning(s){}",
                            all.len() - errors,
                            if *strict {
                                " (--strict: warnings fail too)"
                            } else {
                                ""
                            }
                        );
                    }
                }
            }
            Ok(i32::from(failing))
        }
        Command::Check {
            bless,
            golden: dir,
            json,
        } => {
            let dir = &dir.clone().unwrap_or_else(|| {
                project
                    .as_ref()
                    .map_or_else(|| PathBuf::from("golden"), |p| p.root.join("golden"))
            });
            let report = golden::check(&library, dir, *bless)?;
            if *json {
                print_json(&report);
            } else {
                for drift in &report.drift {
                    match drift {
                        Drift::Changed {
                            profile,
                            file,
                            diff,
                        } => {
                            println!("{file}: profile `{profile}` compiles to other bytes\n{diff}");
                        }
                        Drift::Missing { profile, file } => {
                            println!("{file}: missing; profile `{profile}` has no golden file yet");
                        }
                        Drift::Stale { file } => {
                            println!("{file}: stale; no profile compiles to it")
                        }
                    }
                }
                for file in &report.blessed {
                    eprintln!("blessed {file}");
                }
                if !report.drift.is_empty() {
                    eprintln!(
                        "error: {} of {} profiles drifted from {}; if the change is intended, run `bootforge check --bless` and commit {}",
                        report.drift.len(),
                        report.checked.len(),
                        dir.display(),
                        dir.display()
                    );
                }
            }
            Ok(if report.drift.is_empty() { 0 } else { 1 })
        }
        #[cfg(feature = "smoke")]
        Command::Smoke {
            profile,
            scenarios,
            sets,
            keep,
            efs,
            boot_timeout,
            force,
            json,
        } => {
            use crate::smoke;
            if profile == "image" {
                let build = smoke::build_image(*force)?;
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
            let chosen: Vec<&smoke::Scenario> = if scenarios.is_empty() && efs.is_some() {
                vec![smoke::scenario("ok")?]
            } else if scenarios.is_empty() {
                smoke::SCENARIOS.iter().collect()
            } else {
                scenarios
                    .iter()
                    .map(|s| smoke::scenario(s))
                    .collect::<Result<_>>()?
            };
            let overrides = sets.parse()?;
            let options = smoke::Options {
                keep: keep.clone(),
                deadline: boot_timeout.map(std::time::Duration::from_secs),
                efs: efs.clone(),
            };
            let mut reports = Vec::new();
            for scenario in chosen {
                let report = smoke::run(&library, &name, scenario, &overrides, &options)?;
                if !*json {
                    println!("{report}");
                }
                reports.push(report);
            }
            if *json {
                print_json(&reports);
            }
            Ok(if reports.iter().all(smoke::Report::passed) {
                0
            } else {
                1
            })
        }
        #[cfg(feature = "aws")]
        Command::Launch {
            profile,
            sets,
            dry_run,
            wait,
            follow,
            rerun,
            poll,
            ec2_poll,
            status_grace,
            json,
        } => {
            let name = profile_name(&mut library, Some(profile))?;
            let compiled = compile(&library, &name, &sets.parse()?)?;
            aws::launch(
                &compiled,
                &aws::LaunchArgs {
                    dry_run: *dry_run,
                    wait: *wait,
                    follow: *follow,
                    rerun: *rerun,
                    poll: *poll,
                    ec2_poll: *ec2_poll,
                    status_grace: *status_grace,
                    json: *json,
                },
            )
        }
        #[cfg(feature = "aws")]
        Command::Ps { region, json } => {
            aws::ps(&aws::region(&library, region.region.as_deref())?, *json)
        }
        #[cfg(feature = "aws")]
        Command::Terminate {
            ids,
            job,
            region,
            json,
        } => aws::terminate(
            &aws::region(&library, region.region.as_deref())?,
            ids,
            job.as_deref(),
            *json,
        ),
        #[cfg(feature = "aws")]
        Command::Reap { yes, region, json } => aws::reap(
            &aws::region(&library, region.region.as_deref())?,
            *yes,
            *json,
        ),
        Command::Cost {
            profile,
            sets,
            json,
        } => {
            let name = profile_name(&mut library, Some(profile))?;
            let loaded = crate::compile::profile::load(&library, &name, &sets.parse()?)?;
            let report = crate::aws::plan::cost(&name, &loaded.profile);
            if *json {
                print_json(&report);
            } else {
                print_cost(&report);
            }
            Ok(0)
        }
        Command::IamPolicy { profile, sets } => {
            let name = profile_name(&mut library, Some(profile))?;
            let loaded = crate::compile::profile::load(&library, &name, &sets.parse()?)?;
            print_json(&crate::aws::plan::iam_policy(&name, &loaded.profile));
            Ok(0)
        }
        Command::Schema => {
            print_json(&crate::check::schema::profile_schema(&library));
            Ok(0)
        }
        Command::List { what, json } => {
            let rows: Vec<(String, String, String)> = match what {
                ListWhat::Profiles => {
                    let mut rows = Vec::new();
                    for name in library.profile_names() {
                        let summary = crate::compile::profile::load(&library, name, &[])
                            .map(|p| p.profile.summary)
                            .unwrap_or_else(|e| {
                                format!("(invalid: {})", e.to_string().lines().next().unwrap_or(""))
                            });
                        let from = library
                            .profile(name)
                            .map(|f| {
                                if f.path.is_some() {
                                    f.display.clone()
                                } else {
                                    "built-in".to_string()
                                }
                            })
                            .unwrap_or_default();
                        rows.push((name.to_string(), summary, from));
                    }
                    rows
                }
                ListWhat::Snippets => library
                    .snippet_names()
                    .map(|name| {
                        let files = library.snippet(name).expect("listed names exist");
                        let summary = Snippet::load(name, files)
                            .map(|s| s.manifest.summary)
                            .unwrap_or_else(|e| {
                                format!("(invalid: {})", e.to_string().lines().next().unwrap_or(""))
                            });
                        let from = if files.from == "built-in" {
                            files.from.clone()
                        } else {
                            files.dir.clone()
                        };
                        (name.to_string(), summary, from)
                    })
                    .collect(),
            };
            if *json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|(name, summary, from)| {
                        serde_json::json!({"name": name, "summary": summary, "from": from})
                    })
                    .collect();
                print_json(&rows);
            } else {
                let width = rows.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
                let from_width = rows.iter().map(|(_, _, f)| f.len()).max().unwrap_or(0);
                for (name, summary, from) in rows {
                    println!("{name:width$}  {from:from_width$}  {summary}");
                }
            }
            Ok(0)
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialize to JSON")
    );
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("standard output", "write to", e)),
    }
}

fn money(v: Option<f64>) -> String {
    v.map_or("unpriced".to_string(), |v| format!("${v:.2}"))
}

fn print_cost(report: &crate::aws::plan::CostReport) {
    println!(
        "profile {}: {:.2} h of timeout and grace, prices for {} ({})",
        report.profile, report.budget_hours, report.region, report.source
    );
    for t in &report.types {
        println!(
            "  {:14} {:18} {}/h, {} at the timeout",
            t.instance_type,
            t.gpu.as_deref().unwrap_or("?"),
            t.price_per_hour
                .map_or("unpriced".to_string(), |p| format!("${p:.4}")),
            money(t.cost_at_timeout)
        );
    }
    if let Some(ceiling) = report.max_cost_usd {
        println!("  max_cost_usd: ${ceiling:.2}");
    }
    if report.cheaper.is_empty() {
        println!("no cheaper type in the catalog carries the same GPU or a better one");
    } else {
        println!("cheaper types with the same GPU or a better one:");
        for t in &report.cheaper {
            println!(
                "  {:14} {:18} ${:.4}/h, {} at the timeout",
                t.instance_type,
                t.gpu.as_deref().unwrap_or("?"),
                t.price_per_hour.unwrap_or(0.0),
                money(t.cost_at_timeout)
            );
        }
    }
}

/// The commands that talk to EC2.
#[cfg(feature = "aws")]
mod aws {
    use std::time::Duration;

    use super::{money, print_json};
    use crate::aws::ec2::{self, Instance};
    use crate::aws::operate::{self, Event};
    use crate::check::diagnostics::{Error, Result};
    use crate::compile::Compiled;
    use crate::compile::library::Library;

    fn runtime() -> Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Environment {
                message: format!("cannot start the async runtime: {e}"),
                help: None,
            })
    }

    /// The region for commands that take no profile.
    pub fn region(library: &Library, given: Option<&str>) -> Result<String> {
        if let Some(r) = given {
            return Ok(r.to_string());
        }
        for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if let Ok(r) = std::env::var(var)
                && !r.is_empty()
            {
                return Ok(r);
            }
        }
        Ok(
            crate::compile::profile::load(library, crate::compile::profile::DEFAULT_PROFILE, &[])?
                .profile
                .instance
                .region,
        )
    }

    fn progress(json: bool) -> impl FnMut(Event) {
        move |e| match e {
            Event::Progress(line) => eprintln!("{line}"),
            // With --json the log would break the document: it goes to stderr.
            Event::Log(text) if json => eprint!("{text}"),
            Event::Log(text) => print!("{text}"),
        }
    }

    /// What `launch` was asked.
    pub struct LaunchArgs {
        pub dry_run: bool,
        pub wait: bool,
        pub follow: bool,
        pub rerun: bool,
        pub poll: f64,
        pub ec2_poll: f64,
        pub status_grace: f64,
        pub json: bool,
    }

    /// Where this host keeps the claims of jobs whose directory it does not
    /// see (no shared EFS).
    fn local_claims() -> std::path::PathBuf {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/state"))
            })
            .unwrap_or_else(std::env::temp_dir);
        base.join("bootforge/claims")
    }

    pub fn launch(compiled: &Compiled, args: &LaunchArgs) -> Result<i32> {
        let job = &compiled.profile.profile.job;
        let host_dir =
            std::path::PathBuf::from(job.host_log_dir.as_deref().unwrap_or(&job.log_dir));
        let seconds = |s: f64| Duration::from_secs_f64(s.max(0.05));
        let intervals = crate::aws::wait::Intervals {
            status: seconds(args.poll),
            ec2: seconds(args.ec2_poll),
            status_grace: Duration::from_secs_f64(args.status_grace.max(0.0)),
        };
        let json = args.json;
        runtime()?.block_on(async {
            let client = ec2::client(&compiled.profile.profile.instance.region).await;
            if args.dry_run {
                let claim = crate::aws::claim::Claim::new(
                    &compiled.profile.name,
                    &job.id,
                    1,
                    &compiled.payload.sha256(),
                    operate::now(),
                );
                let plan = crate::aws::plan::plan(compiled, &claim)?;
                for skipped in &plan.skipped {
                    eprintln!("not using {skipped}");
                }
                let answer = ec2::dry_run(&client, &plan, &plan.attempts[0]).await?;
                if json {
                    print_json(&answer);
                } else {
                    println!("{}", answer.message);
                }
                return Ok(if answer.allowed { 0 } else { 1 });
            }
            let claims = crate::aws::claim::Claims::open(&host_dir, &local_claims(), &job.id)?;
            if !claims.shared {
                eprintln!(
                    "warning: {} is not on this host: the claim on job {} is kept in {}, which guards against launches from this host only",
                    host_dir.display(),
                    job.id,
                    claims.dir().display()
                );
            }
            let mut on = progress(json);
            let launched =
                operate::launch(&client, compiled, &claims, args.rerun, intervals, &mut on).await?;
            let i = &launched.instance;
            if !json {
                println!(
                    "{} {} {} ({}) in {}, private IP {}, {}/h, {} at the timeout, deadline {}",
                    match (&launched.finished, launched.launched) {
                        (Some(_), _) => "finished",
                        (None, true) => "launched",
                        (None, false) => "found",
                    },
                    i.id,
                    i.state,
                    i.instance_type,
                    i.subnet.as_deref().unwrap_or("?"),
                    i.private_ip.as_deref().unwrap_or("-"),
                    launched
                        .price_per_hour
                        .map_or("unpriced".to_string(), |p| format!("${p:.4}")),
                    money(launched.cost_at_timeout),
                    i.deadline.as_deref().unwrap_or("-")
                );
            }
            let mut doc = serde_json::json!({
                "launched": launched.launched,
                "run": launched.run,
                "instance_id": i.id,
                "state": i.state,
                "instance_type": i.instance_type,
                "subnet": i.subnet,
                "private_ip": i.private_ip,
                "price_per_hour": launched.price_per_hour,
                "cost_at_timeout": launched.cost_at_timeout,
                "deadline": i.deadline,
                "profile": compiled.profile.name,
                "job": job.id,
                "payload_sha256": compiled.payload.sha256(),
                "client_token": launched.attempt.as_ref().map(|a| a.client_token.clone()),
                "no_capacity": launched.no_capacity,
                "claim": claims.dir().join(crate::aws::claim::CLAIM_FILE),
                "claim_shared": launched.claim_shared,
            });
            let finished = match (&launched.finished, args.wait) {
                (Some(f), _) => Some(f.clone()),
                (None, true) => Some(
                    crate::aws::wait::wait(&client, i, claims.dir(), intervals, args.follow, &mut on).await?,
                ),
                (None, false) => None,
            };
            let mut code = 0;
            if let Some(finished) = finished {
                if !json {
                    match &finished.status {
                        Some(_) => println!(
                            "job {} run {} {} (exit code {})",
                            job.id, launched.run, finished.outcome, finished.exit_code
                        ),
                        None => println!(
                            "job {} run {} wrote no status in {}: {}{}",
                            job.id,
                            launched.run,
                            claims.dir().display(),
                            finished.outcome,
                            finished
                                .state_reason
                                .as_ref()
                                .map(|r| format!(" ({}: {})", r.code, r.message))
                                .unwrap_or_default()
                        ),
                    }
                }
                code = finished.exit_code;
                doc["wait"] = serde_json::to_value(&finished).unwrap_or_default();
            }
            if json {
                print_json(&doc);
            }
            Ok(code)
        })
    }

    fn age(i: &Instance, now: u64) -> u64 {
        i.launched.map_or(0, |l| now.saturating_sub(l))
    }

    fn hms(seconds: u64) -> String {
        format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
    }

    pub fn ps(region: &str, json: bool) -> Result<i32> {
        runtime()?.block_on(async {
            let client = ec2::client(region).await;
            let now = operate::now();
            let list = ec2::bootforge_instances(&client).await?;
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|i| {
                    let price = crate::check::catalog::lookup(&i.instance_type).map(|t| t.price_per_hour);
                    serde_json::json!({
                        "instance_id": i.id,
                        "profile": i.profile,
                        "job": i.job,
                        "state": i.state,
                        "instance_type": i.instance_type,
                        "age_seconds": age(i, now),
                        "deadline": i.deadline,
                        "past_deadline": i.deadline_epoch().is_some_and(|d| d < now),
                        "cost_so_far": price.map(|p| crate::check::catalog::job_cost(p, age(i, now))),
                    })
                })
                .collect();
            if json {
                print_json(&rows);
            } else if list.is_empty() {
                println!("no bootforge instance is alive in {region}");
            } else {
                println!(
                    "{:20} {:18} {:14} {:9} {:12} {:>7} {:21} {:>8}",
                    "INSTANCE", "PROFILE", "JOB", "STATE", "TYPE", "AGE", "DEADLINE", "COST"
                );
                for (i, row) in list.iter().zip(&rows) {
                    println!(
                        "{:20} {:18} {:14} {:9} {:12} {:>7} {:21} {:>8}{}",
                        i.id,
                        i.profile.as_deref().unwrap_or("?"),
                        i.job.as_deref().unwrap_or("?"),
                        i.state,
                        i.instance_type,
                        hms(age(i, now)),
                        i.deadline.as_deref().unwrap_or("-"),
                        money(row["cost_so_far"].as_f64()),
                        if row["past_deadline"] == true {
                            "  PAST DEADLINE"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(0)
        })
    }

    /// Prints what terminating did; the exit code: 0 when every instance
    /// was terminated, 1 when EC2 refused some.
    fn report_terminations(
        done: &[crate::aws::reap::Termination],
        verb: &str,
        json_key: &str,
        extra: Option<(&str, serde_json::Value)>,
        json: bool,
    ) -> i32 {
        let refused = done.iter().filter(|t| !t.terminated).count();
        if json {
            let mut doc = serde_json::json!({
                json_key: done.iter().filter(|t| t.terminated).map(|t| t.instance_id.clone()).collect::<Vec<_>>(),
                "refused": done.iter().filter(|t| !t.terminated).collect::<Vec<_>>(),
            });
            if let Some((k, v)) = extra {
                doc[k] = v;
            }
            print_json(&doc);
        } else {
            for t in done {
                match &t.error {
                    None => println!("{verb} {}", t.instance_id),
                    Some(e) => println!(
                        "could not terminate {} (profile {}): {e}",
                        t.instance_id,
                        t.profile.as_deref().unwrap_or("?")
                    ),
                }
            }
        }
        i32::from(refused > 0)
    }

    pub fn terminate(region: &str, ids: &[String], job: Option<&str>, json: bool) -> Result<i32> {
        if ids.is_empty() && job.is_none() {
            return Err(Error::Usage {
                message: "say which instances: `terminate INSTANCE…` or `terminate --job ID`"
                    .to_string(),
            });
        }
        runtime()?.block_on(async {
            let client = ec2::client(region).await;
            let mut targets = Vec::new();
            if let Some(job) = job {
                targets.extend(ec2::find_job(&client, None, job).await?);
            }
            if !ids.is_empty() {
                let found = ec2::describe(&client, Vec::new(), ids.to_vec()).await?;
                for id in ids {
                    match found.iter().find(|i| &i.id == id) {
                        Some(i) if i.job.is_some() => targets.push(i.clone()),
                        Some(_) => {
                            return Err(Error::Usage {
                                message: format!("{id} was not launched by bootforge (it has no {} tag): not terminating it", crate::aws::plan::TAG_JOB),
                            });
                        }
                        None => return Err(Error::Usage { message: format!("no instance {id} in {region}") }),
                    }
                }
            }
            targets.retain(|i| i.state != "terminated");
            if targets.is_empty() {
                if json {
                    print_json(&serde_json::json!({ "terminated": [], "refused": [] }));
                } else {
                    println!("nothing to terminate");
                }
                return Ok(0);
            }
            let done = crate::aws::reap::terminate_by_profile(&client, &targets).await;
            Ok(report_terminations(&done, "terminating", "terminated", None, json))
        })
    }

    pub fn reap(region: &str, yes: bool, json: bool) -> Result<i32> {
        runtime()?.block_on(async {
            let client = ec2::client(region).await;
            let live = ec2::bootforge_instances(&client).await?;
            let expired = crate::aws::reap::expired(&live, operate::now());
            let listed = serde_json::to_value(&expired).unwrap_or_default();
            if !yes {
                if json {
                    print_json(&serde_json::json!({ "expired": listed, "terminated": [], "refused": [] }));
                } else if expired.is_empty() {
                    println!("no bootforge instance is past its deadline in {region}");
                } else {
                    for e in &expired {
                        let i = &e.instance;
                        println!(
                            "expired {} {} (profile {}, job {}) deadline {}{} (run with --yes to terminate)",
                            i.id,
                            i.state,
                            i.profile.as_deref().unwrap_or("?"),
                            i.job.as_deref().unwrap_or("?"),
                            crate::aws::plan::rfc3339(e.deadline),
                            if e.from_tag { "" } else { " (launch time + the largest budget: its deadline tag is unreadable)" }
                        );
                    }
                }
                return Ok(0);
            }
            if expired.is_empty() {
                if json {
                    print_json(&serde_json::json!({ "expired": [], "terminated": [], "refused": [] }));
                } else {
                    println!("no bootforge instance is past its deadline in {region}");
                }
                return Ok(0);
            }
            let instances: Vec<Instance> = expired.iter().map(|e| e.instance.clone()).collect();
            let done = crate::aws::reap::terminate_by_profile(&client, &instances).await;
            Ok(report_terminations(&done, "terminating", "terminated", Some(("expired", listed)), json))
        })
    }
}
