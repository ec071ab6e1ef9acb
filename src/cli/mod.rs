//! The command line: argv in (this module: the arguments), the library
//! called (`dispatch`; the commands that talk to EC2 in `instances`), text
//! or JSON out (`reports`, and `job_reports` for `status` and `jobs`; for
//! programs, failures as JSON and the schemas of the documents in
//! `documents`), exit code back. The only module that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod dispatch;
mod documents;
#[cfg(feature = "aws")]
mod instances;
mod job_reports;
mod reports;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::compile::overrides::Override;
use crate::diagnostics::Result;

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
        after_help = "Examples:\n  bootforge smoke image                     build the image (once per recipe; needs root, debootstrap, Docker)\n  bootforge smoke traffic-sign-gpu          every scenario\n  bootforge smoke traffic-sign-gpu --scenario hang --keep /tmp/boot\n  bootforge smoke traffic-sign-gpu --efs ~/recordings    your own pipeline and data as the EFS\n\nScenarios: ok, fail, hang, no-requirements, bad-requirements, no-efs, no-gpu, background-child, runner-killed, stale-run, log-fs-only, interrupted, spot-interruption, efs-hangs-at-finalize."
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
        /// How cloud-init's units are ordered: Debian's (before
        /// sysinit.target) or Amazon Linux 2023's (after it, and its
        /// power_state doing nothing).
        #[arg(long, value_name = "ORDERING", default_value = "debian", value_parser = ["debian", "al2023"])]
        ordering: String,
        /// `smoke image`: rebuild even when an image of the same recipe exists.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Start a job's instance with the compiled payload; `--wait` follows it to the end.
    #[cfg(feature = "aws")]
    #[command(
        after_help = "Examples:\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --dry-run\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --json --wait\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --wait --follow\n  bootforge launch traffic-sign-gpu --set job_id=run-42 --rerun     a new run of a finished job\n  bootforge launch traffic-sign-gpu --set job_id=try-1 --local --efs ./efs --wait     rehearse in a container\n\nOne job, one instance: a launch of a job that has an instance attaches to it; of a finished job, reports its outcome.\nExit codes: 0 the job succeeded (or, without --wait, its instance runs), 1 it ended otherwise, 2 usage, environment or AWS error (worth a retry), 3 it wrote no status, 4 its instance was interrupted (spot), 5 its instance failed to launch, 75 the account's quota is reached (try later)."
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
        /// Rehearse on this machine: the instance is a container of the smoke
        /// image booted from the same payload, the EFS a host folder.
        #[arg(long)]
        local: bool,
        /// With --local: the folder that plays the EFS (default: the file
        /// system that holds the job's host_log_dir).
        #[arg(long, value_name = "DIR", requires = "local")]
        efs: Option<PathBuf>,
        /// Seconds between two looks at the job's status file and log.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 2.0,
            env = "BOOTFORGE_POLL"
        )]
        poll: f64,
        /// Seconds between two looks at EC2 while waiting (a hundred waiters
        /// at 30 s make 3.3 calls a second, under EC2's rate for the account).
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 30.0,
            env = "BOOTFORGE_EC2_POLL"
        )]
        ec2_poll: f64,
        /// Seconds to look for the status after the instance terminated (an
        /// NFS client may show a new file late).
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 30.0,
            env = "BOOTFORGE_STATUS_GRACE"
        )]
        status_grace: f64,
        #[arg(long)]
        json: bool,
    },
    /// List the live instances bootforge launched, with their deadline and cost so far.
    #[cfg(feature = "aws")]
    #[command(after_help = "Examples:\n  bootforge ps\n  bootforge ps --region us-east-2 --json")]
    Ps {
        /// The local instances of `launch --local` instead.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        region: RegionArg,
        #[arg(long)]
        json: bool,
    },
    /// A job by its id: its run and attempts, the instance and its state,
    /// the phase now and for how long, the cost so far, the outcome.
    #[cfg(feature = "aws")]
    #[command(
        after_help = "Examples:\n  bootforge status run-42\n  bootforge status run-42 --profile traffic-sign-gpu-spot --json"
    )]
    Status {
        job: String,
        #[command(flatten)]
        place: JobPlace,
        #[arg(long)]
        json: bool,
    },
    /// A job's log: the current run's, or an earlier one's.
    #[command(
        after_help = "Examples:\n  bootforge logs run-42\n  bootforge logs run-42 --follow\n  bootforge logs run-42 --run 1"
    )]
    Logs {
        job: String,
        #[command(flatten)]
        place: JobPlace,
        /// Print the log as it grows, until the run's final status.
        #[arg(long, conflicts_with_all = ["offset", "tail"])]
        follow: bool,
        /// An earlier run's log (`launch --rerun` made the later ones).
        #[arg(long, value_name = "N")]
        run: Option<u32>,
        /// Whole lines from byte N on (what a page streams from).
        #[arg(long, value_name = "N", conflicts_with = "tail")]
        offset: Option<u64>,
        /// Whole lines of the last BYTES only.
        #[arg(long, value_name = "BYTES")]
        tail: Option<u64>,
        /// One JSON document: the lines, their byte offsets, and whether
        /// the run has ended.
        #[arg(long)]
        json: bool,
    },
    /// Every job, newest first: outcome, attempts, duration, cost; totals
    /// over the window (jobs by outcome, GPU hours, money spent, spot's saving).
    #[command(
        after_help = "Examples:\n  bootforge jobs\n  bootforge jobs --since 30d --state ended --limit 20\n  bootforge jobs --profile traffic-sign-gpu-spot --json"
    )]
    Jobs {
        #[command(flatten)]
        place: JobPlace,
        /// The window: live jobs and those that ended in the last DURATION
        /// (7d, 36h, 90m), or `all`.
        #[arg(long, value_name = "DURATION", default_value = "7d")]
        since: String,
        /// Which jobs: live (queued or running), ended, or all.
        #[arg(long, value_enum, default_value_t = JobState::All)]
        state: JobState,
        /// Show the N newest only (the totals count every job of the window).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// One pass over every live job: instances asked once, statuses read,
    /// retry policies continued, queued jobs started, deadlines reaped; prints
    /// the jobs that ended and are not yet acknowledged.
    #[cfg(feature = "aws")]
    #[command(
        after_help = "Examples:\n  bootforge advance --profile traffic-sign-gpu --json            one pass; a JSON line per ended job\n  bootforge advance --profile traffic-sign-gpu --ack run-42:1     the end of run 1 of run-42 was delivered\n  bootforge advance --watch --every 30                           the daemon, for hosts without Celery\n\nA job's end is printed by every pass until it is acknowledged (--ack, or --watch once it printed it): callbacks must be idempotent on (job, run).\nThe pass never waits on an instance; run it every 30 s or so (Celery beat: bootforge.celery.configure)."
    )]
    Advance {
        #[command(flatten)]
        place: JobPlace,
        /// Acknowledge that the end of run RUN of job JOB was delivered
        /// (repeatable); no pass is made.
        #[arg(long = "ack", value_name = "JOB:RUN")]
        ack: Vec<String>,
        /// Pass again every --every seconds until interrupted; each ended job
        /// is acknowledged once printed.
        #[arg(long)]
        watch: bool,
        /// Seconds between passes (with --watch; 30 by default), or how often
        /// passes are meant to come: recorded, so that `status` and `jobs`
        /// tell when they stop.
        #[arg(long, value_name = "SECONDS")]
        every: Option<f64>,
        /// Seconds to look for a status after its instance is gone (an NFS
        /// client may show a new file late).
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 30.0,
            env = "BOOTFORGE_STATUS_GRACE"
        )]
        status_grace: f64,
        /// No attempt is launched once a pass has run this long; the rest
        /// waits for the next pass.
        #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
        budget: f64,
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
        /// Local instances (`local-…`) of `launch --local` instead.
        #[arg(long)]
        local: bool,
        /// With --local: rehearse a spot interruption, the notice on the
        /// instance's metadata service, then the end after --warning.
        #[arg(long, requires = "local")]
        spot_notice: bool,
        /// Seconds from the spot notice to the instance's end (EC2: about 120).
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 30,
            requires = "spot_notice"
        )]
        warning: u64,
        /// Where the jobs' claims are, when `launch` was given overrides:
        /// the same `--set job.host_log_dir=…` (each instance's profile is
        /// loaded with them to record the end on purpose in its claim).
        #[command(flatten)]
        sets: Sets,
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
    /// Print the JSON Schema of the profile format (snippets included), for
    /// editors, or of a JSON document bootforge prints, for programs.
    #[command(
        after_help = "Examples:\n  bootforge schema > schema/profile.schema.json\n  # then start a profile with: # yaml-language-server: $schema=../schema/profile.schema.json\n  bootforge schema launch     # what `launch --json` prints\n  bootforge schema error      # a failure's line on stderr with BOOTFORGE_ERRORS=json"
    )]
    Schema {
        #[arg(value_enum, default_value_t = SchemaOf::Profile)]
        document: SchemaOf,
    },
    /// Print the completion script of a shell.
    #[command(
        after_help = "Examples:\n  bootforge completions bash > /etc/bash_completion.d/bootforge\n  bootforge completions zsh > \"${fpath[1]}/_bootforge\"\n  bootforge completions fish > ~/.config/fish/completions/bootforge.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page; with --dir, write one page per command there.
    #[command(
        after_help = "Examples:\n  bootforge man | man -l -\n  bootforge man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write bootforge.1 and bootforge-COMMAND.1 into DIR (created if needed).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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

/// Where a job's directory is: under its profile's `host_log_dir` (with
/// the overrides `launch` had), or for a local job in the EFS folder.
#[derive(Debug, clap::Args)]
struct JobPlace {
    /// The profile the job was launched with (the default profile otherwise).
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    #[command(flatten)]
    sets: Sets,
    /// A job of `launch --local`.
    #[arg(long)]
    local: bool,
    /// With --local: the folder that played the EFS (as `launch --local --efs`).
    #[arg(long, value_name = "DIR", requires = "local")]
    efs: Option<PathBuf>,
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

/// The documents whose JSON Schema `schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaOf {
    /// A profile (YAML), snippets' parameters included.
    Profile,
    /// What `launch --json` prints.
    Launch,
    /// Each line `advance --json` prints: a job that ended (as `launch
    /// --wait --json` reports it).
    Advance,
    /// What `status JOB --json` prints.
    Status,
    /// A run's `status.json`, as the runner writes it on the EFS.
    RunStatus,
    /// What `jobs --json` prints.
    Jobs,
    /// What `logs --json` prints.
    Log,
    /// A failure's one line on stderr, with BOOTFORGE_ERRORS=json.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum JobState {
    Live,
    Ended,
    All,
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
    if let Err(e) = end_with_parent() {
        return fail(&e);
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && documents::errors_as_json() => {
            documents::print_failure(&documents::Failure::usage(&e.render().to_string()));
            return 2;
        }
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch::execute(cli) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// With `BOOTFORGE_PARENT_PID` (the Python API sets it), bootforge ends
/// when that process does, however it ends (SIGKILL, an OOM kill): a
/// waiter never outlives its caller. The instance keeps its own deadline,
/// and a later `launch` of the job attaches to it.
fn end_with_parent() -> Result<()> {
    let Some(given) = std::env::var_os("BOOTFORGE_PARENT_PID") else {
        return Ok(());
    };
    let parent: i32 = given
        .to_str()
        .and_then(|p| p.trim().parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| crate::diagnostics::Error::Usage {
            message: format!(
                "BOOTFORGE_PARENT_PID is {given:?}, not a process id: set it to the caller's pid, or unset it"
            ),
        })?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl and getppid only read their arguments and this
        // process's own state.
        let (set, now) = unsafe {
            (
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGTERM as libc::c_ulong,
                    0,
                    0,
                    0,
                ),
                libc::getppid(),
            )
        };
        // The parent may have died before the signal was asked for.
        if set == 0 && now != parent {
            std::process::exit(143);
        }
    }
    Ok(())
}

/// Reports `e` on stderr (as one JSON line with `BOOTFORGE_ERRORS=json`)
/// and gives its exit code.
fn fail(e: &crate::diagnostics::Error) -> i32 {
    let diagnostic = crate::check::validate::Diagnostic::from(e);
    if documents::errors_as_json() {
        documents::print_failure(&documents::Failure::of(&diagnostic, e.exit_code()));
    } else {
        eprintln!("{diagnostic}");
    }
    e.exit_code()
}
