//! The one error type. Its `Display` is the only place where messages are
//! worded; everything else builds values.

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
    pub fn in_source(file: &str, source: &str, line: usize, column: usize) -> Location {
        let text = source
            .lines()
            .nth(line.saturating_sub(1))
            .map(str::to_string);
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
    },
    /// Rendered output that is not what it must be (not YAML, not a mapping…).
    Output { snippet: String, message: String },
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
            Error::Yaml { message, .. } if message.contains("unknown field") => "unknown-key",
            Error::Yaml { message, .. }
                if message.contains("invalid type")
                    || message.contains("invalid value")
                    || message.contains("not a duration")
                    || message.contains("has no unit") =>
            {
                "wrong-type"
            }
            Error::Yaml { .. } => "yaml-syntax",
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
        }
    }

    /// Where in a file (or in a `--set` argument) the problem is, when that
    /// is known.
    pub fn location(&self) -> Option<Location> {
        if let Error::Set { arg, message, .. } = self {
            return Some(set_location(arg, message));
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
            _ => None,
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
            } => {
                format!(
                    "invalid profile {file}: snippet `{snippet}`, parameter `{param}` ({origin}) {message}"
                )
            }
            Error::Requires {
                file,
                snippet,
                required,
                ..
            } => format!(
                "invalid profile {file}: snippet `{snippet}` requires snippet `{required}`, which the profile does not use"
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
            } => format!(
                "snippets `{first}` and `{second}` both set cloud-config `{key}`: `{first}` says {first_value}, `{second}` says {second_value}"
            ),
            Error::Output { snippet, message } => {
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
pub(crate) fn set_location(arg: &str, message: &str) -> Location {
    let path_is_wrong = [
        "unknown field",
        "not a section",
        "empty part",
        "dotted.path=value",
    ]
    .iter()
    .any(|m| message.contains(m));
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

/// For serde's "unknown field `x`, expected one of `a`, `b`": the closest
/// expected name, as a suggestion.
pub(crate) fn unknown_field_help(message: &str) -> Option<String> {
    let start = message.find("unknown field `")?;
    let rest = &message[start + "unknown field `".len()..];
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match did_you_mean(field, expected.iter().copied()) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None => Some(format!(
            "the keys allowed here are: {}",
            expected.join(", ")
        )),
    }
}

/// serde_yaml_ng starts some messages with the path (`job: unknown field…`);
/// the path is shown separately.
pub(crate) fn strip_path_prefix(message: &str, path: Option<&str>) -> String {
    match (message.split_once(": "), path) {
        (Some((head, rest)), Some(path))
            if path == head || path.starts_with(&format!("{head}.")) =>
        {
            rest.to_string()
        }
        _ => message.to_string(),
    }
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
}
