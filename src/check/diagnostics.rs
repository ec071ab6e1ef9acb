//! The one error type. Its `Display` is the only place where messages are
//! worded; everything else builds values.
//!
//! Longer than the other modules on purpose: it is the catalogue of every
//! problem bootforge reports, and each variant's code, severity, wording
//! and help sit side by side so that the catalogue reads in one place.

use std::fmt;
use std::path::PathBuf;

/// A place in a source file, 1-based, with the text of that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// How many characters the carets underline.
    pub len: usize,
    pub text: Option<String>,
}

impl Location {
    /// A location in `source` (the file's contents), keeping the line's text.
    /// A position past the end (a parser's "end of input" after a last line
    /// without a newline) is the end of the last line.
    pub fn in_source(file: &str, source: &str, line: usize, column: usize) -> Location {
        let mut line = line.max(1);
        let mut column = column.max(1);
        let mut text = source.lines().nth(line - 1).map(str::to_string);
        if text.is_none()
            && let Some((i, last)) = source.lines().enumerate().last()
            && i + 1 < line
        {
            line = i + 1;
            column = last.chars().count() + 1;
            text = Some(last.to_string());
        }
        Location {
            file: file.to_string(),
            line,
            column,
            len: 1,
            text,
        }
    }

    /// The same place, underlining `len` characters.
    pub fn with_len(mut self, len: usize) -> Location {
        self.len = len.max(1);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  --> {}:{}:{}", self.file, self.line, self.column)?;
        if let Some(text) = &self.text {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            write!(f, "\n{pad} |\n{} | {text}\n{pad} | ", self.line)?;
            let width = text.chars().count();
            let at = self.column.saturating_sub(1).min(width);
            let lead: String = text
                .chars()
                .take(at)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let len = self.len.min(width.saturating_sub(at)).max(1);
            write!(f, "{lead}{}", "^".repeat(len))?;
        }
        Ok(())
    }
}

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
        ceiling: f64,
    },
    /// A budget past what a one-shot job may take (error) or too short to
    /// boot (warning).
    TimeoutBounds { timeout: String, too_long: bool },
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
    /// The payload near EC2's limit, or gzipped to fit without asking.
    SizeBudget { raw: usize, gzipped: bool },
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

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// The kinds of AWS ids a profile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Ami,
    Subnet,
    SecurityGroup,
    KeyPair,
    Account,
    InstanceType,
    Role,
}

/// What is wrong with a YAML file, decided where the problem arises (the
/// text's structure, or the serde call that refused the shape: see
/// `compile::parse`), never from a message's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlKind {
    /// It does not parse.
    Syntax,
    /// A key the format does not have.
    UnknownKey,
    /// A key given twice in one mapping.
    DuplicateKey,
    /// A value of the wrong type or out of its range.
    WrongType,
}

impl YamlKind {
    pub fn code(self) -> &'static str {
        match self {
            YamlKind::Syntax => "yaml-syntax",
            YamlKind::UnknownKey => "unknown-key",
            YamlKind::DuplicateKey => "yaml-duplicate-key",
            YamlKind::WrongType => "wrong-type",
        }
    }
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
            | Error::SizeBudget { .. } => Severity::Warning,
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

    /// What went wrong, in one line.
    pub fn message(&self) -> String {
        match self {
            Error::Io {
                path,
                action,
                source,
            } => format!("cannot {action} {}: {source}", path.display()),
            Error::Yaml {
                what,
                file,
                message,
                ..
            } => format!("invalid {what} {file}: {message}"),
            Error::Profile {
                file,
                path,
                message,
                ..
            } => format!("invalid profile {file}: `{path}` {message}"),
            Error::UnknownProfile {
                name, suggestion, ..
            } => match suggestion {
                Some(s) => format!("no profile named `{name}`; did you mean `{s}`?"),
                None => format!("no profile named `{name}`"),
            },
            Error::UnknownSnippet {
                file,
                name,
                suggestion,
                ..
            } => match suggestion {
                Some(s) => format!(
                    "invalid profile {file}: no snippet named `{name}`; did you mean `{s}`?"
                ),
                None => format!("invalid profile {file}: no snippet named `{name}`"),
            },
            Error::ExtendsCycle { chain, .. } => {
                format!(
                    "profiles extend each other in a circle: {}",
                    chain.join(" -> ")
                )
            }
            Error::Set { arg, message, .. } => format!("invalid --set {arg}: {message}"),
            Error::Param {
                file,
                snippet,
                param,
                origin,
                message,
                ..
            } if param.is_empty() => {
                format!("invalid profile {file}: snippet `{snippet}` ({origin}) {message}")
            }
            Error::Param {
                file,
                snippet,
                param,
                origin,
                message,
                ..
            } => {
                format!(
                    "invalid profile {file}: snippet `{snippet}`, parameter `{param}` ({origin}) {message}"
                )
            }
            Error::Requires {
                file,
                snippet,
                required,
                dropped,
                ..
            } => format!(
                "invalid profile {file}: snippet `{snippet}` requires snippet `{required}`, which {}",
                if *dropped {
                    "this profile drops"
                } else {
                    "the profile does not use"
                }
            ),
            Error::Order {
                file,
                snippet,
                before,
                ..
            } => {
                format!(
                    "invalid profile {file}: snippet `{snippet}` must come after `{before}` under `snippets:`"
                )
            }
            Error::Conflicts {
                file,
                snippet,
                other,
                ..
            } => {
                format!(
                    "invalid profile {file}: snippets `{snippet}` and `{other}` cannot be used together"
                )
            }
            Error::Snippet { snippet, message } => {
                format!("invalid snippet `{snippet}`: {message}")
            }
            Error::Render {
                snippet,
                template,
                line,
                message,
                ..
            } => match line {
                Some(line) => format!(
                    "snippet `{snippet}` failed to render {template} at line {line}: {message}"
                ),
                None => format!("snippet `{snippet}` failed to render {template}: {message}"),
            },
            Error::MergeConflict {
                key,
                first,
                first_value,
                second,
                second_value,
                chosen,
            } => format!(
                "snippets `{first}` and `{second}` both set cloud-config `{key}`: `{first}` says {first_value}, `{second}` says {second_value}{}",
                chosen
                    .as_ref()
                    .and_then(|c| c.template.as_ref())
                    .map(|t| format!(" (in {t})"))
                    .unwrap_or_default()
            ),
            Error::Output {
                snippet, message, ..
            } => {
                format!("snippet `{snippet}` produced invalid output: {message}")
            }
            Error::TooLarge {
                profile,
                raw,
                gzipped,
                limit,
            } => format!(
                "the payload of profile `{profile}` is {raw} bytes, {gzipped} bytes gzipped: more than EC2's user-data limit of {limit} bytes"
            ),
            Error::Usage { message } | Error::Environment { message, .. } => message.clone(),
            Error::CostGuard { profile, reasons } => format!(
                "refusing to launch profile `{profile}`: no instance type fits its cost ceiling ({})",
                reasons.join("; ")
            ),
            Error::Quota { code, message } => {
                format!("RunInstances: {code}: {message}")
            }
            Error::UnknownRegion { region, .. } => format!("`{region}` is not an AWS region"),
            Error::BadId { kind, value } => match kind {
                IdKind::Ami => format!("`{value}` is not an AMI id"),
                IdKind::Subnet => format!("`{value}` is not a subnet id"),
                IdKind::SecurityGroup => format!("`{value}` is not a security group id"),
                IdKind::KeyPair => format!("{value:?} is not a key pair name"),
                IdKind::Account => format!("`{value}` is not an AWS account id"),
                IdKind::InstanceType => format!("`{value}` is not an instance type"),
                IdKind::Role => format!("`{value}` is neither a role name nor a role ARN"),
            },
            Error::InstanceRoleMissing {
                instance_profile: Some(p),
            } => format!("the instance profile `{p}` is given without the role inside it"),
            Error::InstanceRoleMissing {
                instance_profile: None,
            } => "a role is given without the instance profile that carries it".to_string(),
            Error::RegionMismatch { zone, region } => {
                format!("`{zone}` is not an availability zone of region `{region}`")
            }
            Error::ReservedTag { key } => format!("tag `{key}` is set by AWS or by bootforge"),
            Error::BadTag => "tag keys are 1 to 128 characters, values at most 256".to_string(),
            Error::UnknownInstanceType { name, .. } => {
                format!("`{name}` is not an EC2 instance type")
            }
            Error::NotInCatalog { name } => format!(
                "`{name}` is not in bootforge's catalog: its GPU and price cannot be checked"
            ),
            Error::GpuMismatch {
                instance_type,
                has,
                memory_gib,
                expected,
                ..
            } => format!(
                "`{instance_type}` carries an NVIDIA {has} {memory_gib} GB, not the {expected} that `instance.gpu` expects"
            ),
            Error::AmiFamily {
                ami,
                description,
                family,
                ..
            } => format!("the AMI {ami} ({description}) does not support the {family} family"),
            Error::OverBudget {
                instance_type,
                cost,
                price_per_hour,
                hours,
                ceiling,
            } => format!(
                "a job on {instance_type} may cost ${cost:.2} (${price_per_hour:.4}/h × {hours:.2} h of timeout and grace), over the ceiling of ${ceiling:.2}"
            ),
            Error::TimeoutBounds {
                timeout,
                too_long: true,
            } => format!("a budget of {timeout} is past the 48 h a one-shot job may take"),
            Error::TimeoutBounds {
                timeout,
                too_long: false,
            } => format!("a budget of {timeout} leaves no time to boot and mount"),
            Error::GraceBounds {
                grace,
                too_long: false,
            } => format!(
                "a grace of {grace} leaves the finalizer no time to write the status before the dead-man's switch"
            ),
            Error::GraceBounds {
                grace,
                too_long: true,
            } => format!("a grace of {grace} keeps a finished-or-stuck instance paid for long"),
            Error::FinalizerPastGrace {
                kill_after,
                finalize_seconds,
                grace,
            } => format!(
                "SIGKILL {kill_after} after the timeout and {finalize_seconds}s for the finalizer do not fit in the {grace} grace"
            ),
            Error::NoDeadman => "the profile has no dead-man's switch: nothing powers the instance off if the runner never starts".to_string(),
            Error::SetupBudget {
                setup_seconds,
                timeout_seconds,
            } => format!(
                "the setup phases may take up to {setup_seconds}s, the whole {timeout_seconds}s budget"
            ),
            Error::MountedTwice { mount_point } => {
                format!("{mount_point} is mounted twice; the second mount hides the first")
            }
            Error::MountHidden { outer, inner } => format!("mounting {outer} after {inner} hides it"),
            Error::PathNotProvided { path, .. } => format!(
                "{path} is on no mounted file system and not written by the payload: it will not be there at boot"
            ),
            Error::CacheNotKept { cache_dir } => format!(
                "{cache_dir} is on no mounted file system: the cached environments are lost with the instance and no later job finds them"
            ),
            Error::LogsNotKept { log_dir } => format!(
                "{log_dir} is on no mounted file system: logs and status are lost when the instance terminates"
            ),
            Error::Secret { path, what } => format!(
                "`{path}` holds {what}; user-data is readable by any process on the instance and in the EC2 console"
            ),
            Error::SizeBudget { raw, gzipped: false } => format!(
                "the payload is {raw} bytes, {}% of EC2's {}-byte limit",
                raw * 100 / crate::compile::payload::USER_DATA_LIMIT,
                crate::compile::payload::USER_DATA_LIMIT
            ),
            Error::SizeBudget { raw, gzipped: true } => {
                format!("the payload is {raw} bytes raw and had to be gzipped to fit")
            }
            Error::BadScript {
                file,
                line,
                what,
                at,
                snippet,
                template,
                ..
            } => format!(
                "{file} does not parse at its line {line}: {what}; that line is line {at} of what snippet `{snippet}` renders from {template}"
            ),
            Error::Aws {
                operation,
                code,
                message,
                ..
            } if code.is_empty() => format!("{operation}: {message}"),
            Error::Aws {
                operation,
                code,
                message,
                ..
            } => format!("{operation}: {code}: {message}"),
        }
    }

    /// What to do about it, when there is more to say than the message.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Yaml { help, .. }
            | Error::Profile { help, .. }
            | Error::Set { help, .. }
            | Error::Param { help, .. }
            | Error::Environment { help, .. }
            | Error::Aws { help, .. } => help.clone(),
            Error::UnknownRegion { suggestion, .. } => Some(match suggestion {
                Some(r) => format!("did you mean `{r}`? (the regions are the AWS SDK's, every partition's)"),
                None => "regions look like us-east-2 (the regions are the AWS SDK's, every partition's)".to_string(),
            }),
            Error::BadId { kind, .. } => Some(
                match kind {
                    IdKind::Ami => "AMI ids look like ami-0d67eb9a9a933bd88",
                    IdKind::Subnet => "subnet ids look like subnet-098dc7573fb6bf8bd",
                    IdKind::SecurityGroup => "security group ids look like sg-0906d54ac3d704022 (give ids, not names)",
                    IdKind::KeyPair => "a key pair name is 1 to 255 printable ASCII characters",
                    IdKind::Account => "an account id is 12 digits",
                    IdKind::InstanceType => "instance types look like g6e.xlarge",
                    IdKind::Role => "a role name is letters, digits and +=,.@_-; an ARN looks like arn:aws:iam::222634388391:role/NAME",
                }
                .to_string(),
            ),
            Error::InstanceRoleMissing { instance_profile: Some(_) } => Some("name the role too (instance.instance_role: its name or ARN): `iam-policy` scopes iam:PassRole to the role, whose name is often not the profile's".to_string()),
            Error::InstanceRoleMissing { instance_profile: None } => Some("EC2 is given an instance profile, never a role: set instance.instance_profile".to_string()),
            Error::RegionMismatch { .. } => Some("an availability zone is its region and a letter, like us-east-2b".to_string()),
            Error::ReservedTag { .. } => Some("choose another key; bootforge sets Name and the bootforge:* tags itself".to_string()),
            Error::UnknownInstanceType { suggestion, .. } => Some(match suggestion {
                Some(t) => format!("did you mean `{t}`? (the types are the AWS SDK's)"),
                None => "instance types look like g6e.xlarge (the types are the AWS SDK's)".to_string(),
            }),
            Error::NotInCatalog { .. } => Some("the catalog holds the G4dn, G5, G6, G6e, P3, P4d and P5 families; check the type's GPU and price yourself".to_string()),
            Error::GpuMismatch { carried_by: Some((t, more)), expected, has, .. } => Some(format!("the {expected} is on {t} (and {more} more); or expect `gpu: {has}`")),
            Error::GpuMismatch { carried_by: None, models, .. } => Some(format!("known GPU models: {}", models.join(", "))),
            Error::AmiFamily { supports, .. } => Some(format!("it supports {}", supports.join(", "))),
            Error::OverBudget { .. } => Some("raise max_cost_usd, shorten job.timeout, or choose a cheaper type".to_string()),
            Error::TimeoutBounds { too_long: true, .. } => Some("split the job, or raise this check's bound in bootforge if you mean it".to_string()),
            Error::GraceBounds { too_long: false, .. } => Some("give it at least 1m; 5m to 10m is usual".to_string()),
            Error::FinalizerPastGrace { finalize_seconds, .. } => Some(format!("make the grace at least kill_after + {finalize_seconds}s (the finalizer's bound, snippets.shutdown-trap.finalize_seconds)")),
            Error::NoDeadman => Some("add `deadman: {}` first under `snippets:`".to_string()),
            Error::SetupBudget { .. } => Some("lengthen job.timeout or shorten the setup bounds".to_string()),
            Error::MountHidden { .. } => Some("list the outer mount point first".to_string()),
            Error::PathNotProvided { mount_points, .. } if mount_points.is_empty() => Some("mount the file system that holds it with the efs-mount snippet".to_string()),
            Error::PathNotProvided { mount_points, .. } => {
                let mut distinct: Vec<&String> = Vec::new();
                for m in mount_points {
                    if !distinct.contains(&m) {
                        distinct.push(m);
                    }
                }
                let distinct: Vec<&str> = distinct.into_iter().map(String::as_str).collect();
                Some(format!("the mount points are {}", distinct.join(", ")))
            }
            Error::CacheNotKept { .. } => Some("put the cache under an EFS mount point".to_string()),
            Error::LogsNotKept { .. } => Some("put job.log_dir under an EFS mount point".to_string()),
            Error::Secret { .. } => Some("keep secrets in AWS Secrets Manager or SSM Parameter Store and let the instance's role read them at run time".to_string()),
            Error::SizeBudget { gzipped: false, .. } => Some("little room is left: keep large content on the EFS".to_string()),
            Error::SizeBudget { gzipped: true, .. } => Some("set `output.compression: gzip` to make that explicit, or move content to the EFS".to_string()),
            Error::BadScript { fed_by, .. } if fed_by.is_empty() => Some("the snippet's template is wrong: fix it".to_string()),
            Error::BadScript { fed_by, .. } => Some(format!("the snippet was given {}; a value printed with `| safe` must be valid shell", fed_by.join(", "))),
            Error::Quota { .. } => Some(
                "the account's quota for this kind of instance is used up: try later (exit code 75), or ask AWS for more in Service Quotas".to_string(),
            ),
            Error::CostGuard { .. } => Some(
                "raise instance.max_cost_usd, shorten job.timeout or job.grace, or list a cheaper type (`bootforge cost PROFILE` shows them)"
                    .to_string(),
            ),
            Error::UnknownProfile { known, .. } if known.is_empty() => {
                Some("no profile is known; add one with --profiles DIR".to_string())
            }
            Error::UnknownProfile { known, .. } => Some(format!(
                "known profiles: {} (add more with --profiles DIR, or give a path to a .yaml file)",
                known.join(", ")
            )),
            Error::UnknownSnippet { suggestion: None, .. } => Some(
                "`bootforge list snippets` shows the snippets there are; add your own with --snippets DIR".to_string(),
            ),
            Error::ExtendsCycle { .. } => Some("remove one of these `extends:` lines".to_string()),
            Error::Requires {
                snippet,
                required,
                dropped: true,
                ..
            } => Some(format!(
                "remove `{required}: false`, or drop `{snippet}` as well"
            )),
            Error::Requires { snippet, required, .. } => {
                Some(format!("add `{required}:` under `snippets:` before `{snippet}`"))
            }
            Error::Order { snippet, before, .. } => Some(format!("move `{before}` above `{snippet}`")),
            Error::Conflicts { .. } => {
                Some("keep one of them (set the other to `false` to drop it from a parent profile)".to_string())
            }
            Error::Render { fed_by, .. } if !fed_by.is_empty() => {
                Some(format!("its values came from {}", fed_by.join(", ")))
            }
            Error::MergeConflict { .. } => Some(
                "change one snippet's parameters so that they agree, or drop one of the snippets".to_string(),
            ),
            Error::TooLarge { .. } => Some(
                "move large files to the EFS or an S3 object the instance fetches, and keep user-data to the boot logic"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// A `--set` argument shown like a one-line file: the path underlined when
/// the path is wrong, the value otherwise.
pub(crate) fn set_location(arg: &str, path_is_wrong: bool) -> Location {
    let (column, len) = match arg.split_once('=') {
        Some((path, _)) if path_is_wrong => (1, path.chars().count()),
        Some((path, value)) => (path.chars().count() + 2, value.chars().count()),
        None => (1, arg.chars().count()),
    };
    Location::in_source("--set", arg, 1, column).with_len(len)
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

/// The closest of `candidates` to `word`, when it is close enough to be a
/// plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| *d <= (word.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("timout_minutes", ["timeout_minutes", "user"]),
            Some("timeout_minutes".to_string())
        );
        assert_eq!(did_you_mean("zzz", ["timeout_minutes", "user"]), None);
    }

    #[test]
    fn location_points_at_the_column() {
        let loc = Location::in_source("p.yaml", "a: 1\n  bad: x\n", 2, 3);
        assert_eq!(
            loc.to_string(),
            "  --> p.yaml:2:3\n  |\n2 |   bad: x\n  |   ^"
        );
        let loc = loc.with_len(3);
        assert!(loc.to_string().ends_with("  |   ^^^"));
    }

    #[test]
    fn end_of_input_is_the_end_of_the_last_line() {
        let loc = Location::in_source("p.yaml", "a: 1\n  po", 3, 1);
        assert_eq!((loc.line, loc.column), (2, 5));
        assert_eq!(loc.text.as_deref(), Some("  po"));
    }
}
