//! The command line: argv in, text out, exit code back. The only module
//! that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::compile::compile;
use crate::error::{Error, Result};
use crate::explain::Explanation;
use crate::golden::{self, Drift};
use crate::library::Library;
use crate::profile::{DEFAULT_PROFILE, Override};
use crate::snippet::Snippet;
use crate::validate::Severity;

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
        /// Where the golden files are.
        #[arg(long, value_name = "DIR", default_value = "golden")]
        golden: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Boot a profile's payload under real cloud-init in a container; `smoke image` builds that image.
    #[cfg(feature = "smoke")]
    #[command(
        after_help = "Examples:\n  bootforge smoke image                     build the image (once per recipe; needs root, debootstrap, Docker)\n  bootforge smoke traffic-sign-gpu          every scenario\n  bootforge smoke traffic-sign-gpu --scenario hang --keep /tmp/boot\n\nScenarios: ok, fail, hang, no-requirements, bad-requirements, no-efs, no-gpu."
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
        /// `smoke image`: rebuild even when an image of the same recipe exists.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
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
            eprintln!("{}", crate::validate::Diagnostic::from(&e));
            e.exit_code()
        }
    }
}

fn library(cli: &Cli) -> Result<Library> {
    let mut library = Library::builtin();
    for dir in &cli.profiles {
        library.add_profiles_dir(dir)?;
    }
    for dir in &cli.snippets {
        library.add_snippets_dir(dir)?;
    }
    Ok(library)
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
    let mut library = library(&cli)?;
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
                    let mut parts = vec![crate::payload::Part {
                        content_type: "text/cloud-config".to_string(),
                        filename: "cloud-config.yaml".to_string(),
                        content: compiled.cloud_config,
                    }];
                    parts.extend(compiled.parts);
                    crate::payload::mime(&parts)?.into_bytes()
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
                    // An unknown name is a usage error, said once, like compile says it.
                    return Err(crate::profile::load(&library, name, &[]).err().unwrap_or(
                        Error::Usage {
                            message: format!("no profile named `{name}`"),
                        },
                    ));
                }
                all.extend(crate::validate::validate(&library, name, &overrides));
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
            let chosen: Vec<&smoke::Scenario> = if scenarios.is_empty() {
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
                deadline: None,
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
        Command::Schema => {
            print_json(&crate::schema::profile_schema(&library));
            Ok(0)
        }
        Command::List { what, json } => {
            let rows: Vec<(String, String)> = match what {
                ListWhat::Profiles => {
                    let mut rows = Vec::new();
                    for name in library.profile_names() {
                        let summary = crate::profile::load(&library, name, &[])
                            .map(|p| p.profile.summary)
                            .unwrap_or_else(|e| {
                                format!("(invalid: {})", e.to_string().lines().next().unwrap_or(""))
                            });
                        rows.push((name.to_string(), summary));
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
                        (name.to_string(), summary)
                    })
                    .collect(),
            };
            if *json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|(name, summary)| serde_json::json!({"name": name, "summary": summary}))
                    .collect();
                print_json(&rows);
            } else {
                let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
                for (name, summary) in rows {
                    println!("{name:width$}  {summary}");
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
