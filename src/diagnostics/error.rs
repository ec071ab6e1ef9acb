//! The one error type: every problem bootforge reports is a variant, with
//! its exit code, stable code, severity and location here, and its wording
//! in `wording`. Every stage returns it; it knows none of them.

use std::fmt;
use std::path::PathBuf;

use super::location::set_location;
use super::{IdKind, Location, Severity, YamlKind};

/// Everything that can go wrong, worded for the person who has to fix it.
#[derive(Debug)]
pub enum Error {
    /// A file or directory could not be read or written.
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// YAML that does not parse, or has the wrong shape (unknown key, wrong type).
    Yaml {
        kind: YamlKind,
        what: &'static str,
        location: Option<Location>,
        file: String,
        message: String,
        help: Option<String>,
    },
    /// A profile value that parses but is not acceptable.
    Profile {
        file: String,
        path: String,
        message: String,
        help: Option<String>,
        location: Option<Location>,
    },
    /// No profile of that name.
    UnknownProfile {
        name: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    /// A profile names a snippet nobody provides.
    UnknownSnippet {
        file: String,
        name: String,
        suggestion: Option<String>,
        location: Option<Location>,
    },
    /// `extends` goes round in a circle.
    ExtendsCycle {
        chain: Vec<String>,
        location: Option<Location>,
    },
    /// A `--set` argument that cannot be applied.
    Set {
        arg: String,
        message: String,
        help: Option<String>,
        /// Whether the path is what is wrong (else the value).
        path_is_wrong: bool,
    },
    /// A snippet parameter that is missing or wrong.
    Param {
        file: String,
        snippet: String,
        param: String,
        origin: String,
        message: String,
        help: Option<String>,
        location: Option<Location>,
    },
    /// A snippet that needs another one which the profile does not use.
    Requires {
        file: String,
        snippet: String,
        required: String,
        /// The profile drops it (`required: false`), and the location is
        /// that line; else the location is the snippet that needs it.
        dropped: bool,
        location: Option<Location>,
    },
    /// A snippet listed before one that must run first.
    Order {
        file: String,
        snippet: String,
        before: String,
        location: Option<Location>,
    },
    /// Two snippets that cannot be used together.
    Conflicts {
        file: String,
        snippet: String,
        other: String,
        location: Option<Location>,
    },
    /// A snippet's own files are wrong (manifest, template syntax).
    Snippet { snippet: String, message: String },
    /// A template failed while rendering.
    Render {
        snippet: String,
        template: String,
        line: Option<usize>,
        location: Option<Location>,
        message: String,
        fed_by: Vec<String>,
    },
    /// Two snippets set the same cloud-config scalar differently.
    MergeConflict {
        key: String,
        first: String,
        first_value: String,
        second: String,
        second_value: String,
        /// The profile line that chose the second snippet.
        chosen: Option<Chosen>,
    },
    /// Rendered output that is not what it must be (not YAML, not a mapping…).
    Output {
        snippet: String,
        message: String,
        /// The profile line that chose the snippet.
        chosen: Option<Chosen>,
    },
    /// The payload does not fit in EC2's user-data limit, even compressed.
    TooLarge {
        profile: String,
        raw: usize,
        gzipped: usize,
        limit: usize,
    },
    /// Wrong use of the command line.
    Usage { message: String },
    /// Something outside bootforge is missing or not answering (Docker, AWS).
    Environment {
        message: String,
        help: Option<String>,
    },
    /// No instance type of the profile fits its cost ceiling.
    CostGuard {
        profile: String,
        reasons: Vec<String>,
    },
    // What `validate` finds in a profile that compiles.
    /// Not a region of any AWS partition.
    UnknownRegion {
        region: String,
        suggestion: Option<String>,
    },
    /// An id that does not have its kind's shape.
    BadId { kind: IdKind, value: String },
    /// An instance profile without the role in it, or a role without one.
    InstanceRoleMissing { instance_profile: Option<String> },
    /// An availability zone of another region.
    RegionMismatch { zone: String, region: String },
    /// A tag key AWS or bootforge sets.
    ReservedTag { key: String },
    /// A tag too long, or with an empty key.
    BadTag,
    /// Not an EC2 instance type (the SDK's list).
    UnknownInstanceType {
        name: String,
        suggestion: Option<String>,
    },
    /// An instance type bootforge's catalog does not know.
    NotInCatalog { name: String },
    /// The type does not carry the GPU the profile expects.
    GpuMismatch {
        instance_type: String,
        has: String,
        memory_gib: u32,
        expected: String,
        /// A type that carries it, and how many more do.
        carried_by: Option<(String, usize)>,
        models: Vec<String>,
    },
    /// The AMI's family does not support the type.
    AmiFamily {
        ami: String,
        description: String,
        family: String,
        supports: Vec<String>,
    },
    /// A job on the type may cost more than the profile allows.
    OverBudget {
        instance_type: String,
        cost: f64,
        price_per_hour: f64,
        hours: f64,
        /// The retry policy's attempts (1 without one).
        attempts: u32,
        ceiling: f64,
    },
    /// A budget past what a one-shot job may take (error) or too short to
    /// boot (warning).
    TimeoutBounds { timeout: String, too_long: bool },
    /// A retry policy that cannot work as written: no attempts, too many,
    /// or no outcome to retry on (error).
    RetryPolicy {
        problem: String,
        max_attempts: u32,
        /// The outcomes a policy may name, comma-separated.
        outcomes: String,
    },
    /// A part of a retry policy that never takes effect (warning).
    RetryNoEffect { key: &'static str, why: String },
    /// `job.max_running` that no job could ever start under (error).
    MaxRunning { value: u32 },
    /// A grace too short for the finalizer (error) or long enough to pay
    /// for a stuck instance (warning).
    GraceBounds { grace: String, too_long: bool },
    /// SIGKILL's wait and the finalizer's bound do not fit in the grace.
    FinalizerPastGrace {
        kill_after: String,
        finalize_seconds: u64,
        grace: String,
    },
    /// No dead-man's switch.
    NoDeadman,
    /// The setup phases' bounds add up to the whole budget.
    SetupBudget {
        setup_seconds: u64,
        timeout_seconds: u64,
    },
    /// A mount point given twice.
    MountedTwice { mount_point: String },
    /// A mount listed after the one it hides.
    MountHidden { outer: String, inner: String },
    /// A path no mount and no written file provides.
    PathNotProvided {
        path: String,
        /// The pipeline's script (an error); else the requirements (a warning).
        required: bool,
        mount_points: Vec<String>,
    },
    /// The requirements' cache on a disk that goes with the instance.
    CacheNotKept { cache_dir: String },
    /// The logs on a disk that goes with the instance.
    LogsNotKept { log_dir: String },
    /// A value that looks like a secret.
    Secret { path: String, what: &'static str },
    /// The bytes EC2 receives near its limit (gzipped or not): little room
    /// is left for the next change.
    SizeBudget {
        /// What EC2 receives.
        bytes: usize,
        /// The user-data before compression.
        raw: usize,
        /// EC2's limit, as the payload stage defines it.
        limit: usize,
        gzipped: bool,
    },
    /// A generated script that bash cannot parse.
    BadScript {
        file: String,
        line: usize,
        what: String,
        at: usize,
        snippet: String,
        template: String,
        fed_by: Vec<String>,
    },
    /// The account's quota is reached: not an error of the profile, and no
    /// other subnet or type helps; later, or a quota increase, does.
    Quota { code: String, message: String },
    /// EC2 said no.
    Aws {
        operation: &'static str,
        code: String,
        message: String,
        help: Option<String>,
    },
}

/// Where a profile chose a snippet: the file and the line of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub file: String,
    pub location: Option<Location>,
    /// The snippet's cloud-config template.
    pub template: Option<String>,
}

/// The exit code of a refusal for quota: the "try later" of sysexits.h.
pub const QUOTA_EXIT: i32 = 75;

/// `Ok` or one [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code the design gives this error: 1 when the thing
    /// checked is wrong, 2 for usage and environment errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. }
            | Error::UnknownProfile { .. }
            | Error::Set { .. }
            | Error::Usage { .. }
            | Error::Environment { .. }
            | Error::Aws { .. } => 2,
            Error::Quota { .. } => QUOTA_EXIT,
            _ => 1,
        }
    }

    /// A short stable name for the kind of problem, for programs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Yaml { kind, .. } => kind.code(),
            Error::Profile { .. } => "invalid-value",
            Error::UnknownProfile { .. } => "unknown-profile",
            Error::UnknownSnippet { .. } => "unknown-snippet",
            Error::ExtendsCycle { .. } => "extends-cycle",
            Error::Set { .. } => "bad-set",
            Error::Param { .. } => "bad-param",
            Error::Requires { .. } => "requires",
            Error::Order { .. } => "order",
            Error::Conflicts { .. } => "conflicts",
            Error::Snippet { .. } => "bad-snippet",
            Error::Render { .. } => "render",
            Error::MergeConflict { .. } => "merge-conflict",
            Error::Output { .. } => "bad-output",
            Error::TooLarge { .. } => "too-large",
            Error::Usage { .. } => "usage",
            Error::Environment { .. } => "environment",
            Error::CostGuard { .. } => "over-budget",
            Error::Aws { .. } => "aws",
            Error::Quota { .. } => "quota",
            Error::UnknownRegion { .. } => "unknown-region",
            Error::BadId { .. } => "bad-id",
            Error::InstanceRoleMissing { .. } => "instance-role-missing",
            Error::RegionMismatch { .. } => "region-mismatch",
            Error::ReservedTag { .. } => "reserved-tag",
            Error::BadTag => "bad-tag",
            Error::UnknownInstanceType { .. } => "unknown-instance-type",
            Error::NotInCatalog { .. } => "unknown-type",
            Error::GpuMismatch { .. } => "gpu-mismatch",
            Error::AmiFamily { .. } => "ami-family",
            Error::OverBudget { .. } => "over-budget",
            Error::TimeoutBounds { .. } => "timeout-bounds",
            Error::RetryPolicy { .. } => "retry-policy",
            Error::RetryNoEffect { .. } => "retry-no-effect",
            Error::MaxRunning { .. } => "max-running",
            Error::GraceBounds { .. } | Error::FinalizerPastGrace { .. } => "grace-bounds",
            Error::NoDeadman => "no-deadman",
            Error::SetupBudget { .. } => "setup-budget",
            Error::MountedTwice { .. } | Error::MountHidden { .. } => "mount-overlap",
            Error::PathNotProvided { .. } => "path-not-provided",
            Error::CacheNotKept { .. } => "cache-not-kept",
            Error::LogsNotKept { .. } => "logs-not-kept",
            Error::Secret { .. } => "secret",
            Error::SizeBudget { .. } => "size-budget",
            Error::BadScript { .. } => "bad-script",
        }
    }

    /// How bad it is: what stops a launch is an error, what may be meant a
    /// warning (`validate --strict` fails on both).
    pub fn severity(&self) -> Severity {
        match self {
            Error::NotInCatalog { .. }
            | Error::AmiFamily { .. }
            | Error::TimeoutBounds {
                too_long: false, ..
            }
            | Error::GraceBounds { too_long: true, .. }
            | Error::NoDeadman
            | Error::SetupBudget { .. }
            | Error::PathNotProvided {
                required: false, ..
            }
            | Error::CacheNotKept { .. }
            | Error::LogsNotKept { .. }
            | Error::SizeBudget { .. }
            | Error::RetryNoEffect { .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// Where in a file (or in a `--set` argument) the problem is, when that
    /// is known.
    pub fn location(&self) -> Option<Location> {
        if let Error::Set {
            arg, path_is_wrong, ..
        } = self
        {
            return Some(set_location(arg, *path_is_wrong));
        }
        match self {
            Error::Yaml { location, .. }
            | Error::Profile { location, .. }
            | Error::UnknownSnippet { location, .. }
            | Error::ExtendsCycle { location, .. }
            | Error::Param { location, .. }
            | Error::Requires { location, .. }
            | Error::Order { location, .. }
            | Error::Conflicts { location, .. }
            | Error::Render { location, .. } => location.clone(),
            Error::MergeConflict { chosen, .. } | Error::Output { chosen, .. } => {
                chosen.as_ref().and_then(|c| c.location.clone())
            }
            _ => None,
        }
    }

    /// The file the problem is in, when it is in one.
    pub fn file(&self) -> Option<&str> {
        match self {
            Error::Yaml { file, .. }
            | Error::Profile { file, .. }
            | Error::UnknownSnippet { file, .. }
            | Error::Param { file, .. }
            | Error::Requires { file, .. }
            | Error::Order { file, .. }
            | Error::Conflicts { file, .. } => Some(file),
            Error::Render { template, .. } => Some(template),
            Error::MergeConflict { chosen, .. } | Error::Output { chosen, .. } => {
                chosen.as_ref().map(|c| c.file.as_str())
            }
            _ => None,
        }
    }

    /// The same error, pointing at the profile line that chose the snippet
    /// whose output it is about.
    pub(crate) fn chosen_by(self, at: Chosen) -> Error {
        match self {
            Error::MergeConflict {
                key,
                first,
                first_value,
                second,
                second_value,
                chosen: None,
            } => Error::MergeConflict {
                key,
                first,
                first_value,
                second,
                second_value,
                chosen: Some(at),
            },
            Error::Output {
                snippet,
                message,
                chosen: None,
            } => Error::Output {
                snippet,
                message,
                chosen: Some(at),
            },
            other => other,
        }
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message())?;
        if let Some(location) = self.location() {
            write!(f, "\n{location}")?;
        }
        if let Some(help) = self.help() {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
