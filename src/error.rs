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
    pub text: Option<String>,
}

impl Location {
    /// A location in `source` (the file's contents), keeping the line's text.
    pub fn in_source(file: &str, source: &str, line: usize, column: usize) -> Location {
        let text = source
            .lines()
            .nth(line.saturating_sub(1))
            .map(|l| l.to_string());
        Location {
            file: file.to_string(),
            line,
            column,
            text,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  --> {}:{}:{}", self.file, self.line, self.column)?;
        if let Some(text) = &self.text {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            write!(f, "\n{pad} |\n{} | {text}\n{pad} | ", self.line)?;
            let caret_at = self.column.saturating_sub(1).min(text.chars().count());
            let lead: String = text
                .chars()
                .take(caret_at)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{lead}^")?;
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
    },
    /// `extends` goes round in a circle.
    ExtendsCycle { chain: Vec<String> },
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
    },
    /// A snippet that needs another one which the profile does not use.
    Requires {
        file: String,
        snippet: String,
        required: String,
    },
    /// A snippet listed before one that must run first.
    Order {
        file: String,
        snippet: String,
        before: String,
    },
    /// Two snippets that cannot be used together.
    Conflicts {
        file: String,
        snippet: String,
        other: String,
    },
    /// A snippet's own files are wrong (manifest, template syntax).
    Snippet { snippet: String, message: String },
    /// A template failed while rendering.
    Render {
        snippet: String,
        template: String,
        line: Option<usize>,
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
}

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
            | Error::Usage { .. } => 2,
            _ => 1,
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

fn help(f: &mut fmt::Formatter<'_>, help: &Option<String>) -> fmt::Result {
    match help {
        Some(h) => write!(f, "\n  = help: {h}"),
        None => Ok(()),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Error::Yaml {
                what,
                location,
                file,
                message,
                help: h,
            } => {
                write!(f, "invalid {what} {file}: {message}")?;
                if let Some(location) = location {
                    write!(f, "\n{location}")?;
                }
                help(f, h)
            }
            Error::Profile {
                file,
                path,
                message,
                help: h,
            } => {
                write!(f, "invalid profile {file}: `{path}` {message}")?;
                help(f, h)
            }
            Error::UnknownProfile {
                name,
                suggestion,
                known,
            } => {
                write!(f, "no profile named `{name}`")?;
                if let Some(s) = suggestion {
                    write!(f, "; did you mean `{s}`?")?;
                }
                if known.is_empty() {
                    write!(
                        f,
                        "\n  = help: no profile is known; add one with --profiles DIR"
                    )
                } else {
                    write!(
                        f,
                        "\n  = help: known profiles: {} (add more with --profiles DIR, or give a path to a .yaml file)",
                        known.join(", ")
                    )
                }
            }
            Error::UnknownSnippet {
                file,
                name,
                suggestion,
            } => {
                write!(f, "invalid profile {file}: no snippet named `{name}`")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(
                        f,
                        "\n  = help: `bootforge list snippets` shows the snippets there are; add your own with --snippets DIR"
                    ),
                }
            }
            Error::ExtendsCycle { chain } => write!(
                f,
                "profiles extend each other in a circle: {}\n  = help: remove one of these `extends:` lines",
                chain.join(" -> ")
            ),
            Error::Set {
                arg,
                message,
                help: h,
            } => {
                write!(f, "invalid --set {arg}: {message}")?;
                help(f, h)
            }
            Error::Param {
                file,
                snippet,
                param,
                origin,
                message,
                help: h,
            } => {
                write!(
                    f,
                    "invalid profile {file}: snippet `{snippet}`, parameter `{param}` ({origin}) {message}"
                )?;
                help(f, h)
            }
            Error::Requires {
                file,
                snippet,
                required,
            } => write!(
                f,
                "invalid profile {file}: snippet `{snippet}` requires snippet `{required}`, which the profile does not use\n  = help: add `{required}:` under `snippets:` before `{snippet}`"
            ),
            Error::Order {
                file,
                snippet,
                before,
            } => write!(
                f,
                "invalid profile {file}: snippet `{snippet}` must come after `{before}` under `snippets:`\n  = help: move `{before}` above `{snippet}`"
            ),
            Error::Conflicts {
                file,
                snippet,
                other,
            } => write!(
                f,
                "invalid profile {file}: snippets `{snippet}` and `{other}` cannot be used together\n  = help: keep one of them (set the other to `false` to drop it from a parent profile)"
            ),
            Error::Snippet { snippet, message } => {
                write!(f, "invalid snippet `{snippet}`: {message}")
            }
            Error::Render {
                snippet,
                template,
                line,
                message,
                fed_by,
            } => {
                write!(f, "snippet `{snippet}` failed to render {template}")?;
                if let Some(line) = line {
                    write!(f, " at line {line}")?;
                }
                write!(f, ": {message}")?;
                if !fed_by.is_empty() {
                    write!(f, "\n  = note: its values came from {}", fed_by.join(", "))?;
                }
                Ok(())
            }
            Error::MergeConflict {
                key,
                first,
                first_value,
                second,
                second_value,
            } => write!(
                f,
                "snippets `{first}` and `{second}` both set cloud-config `{key}`: `{first}` says {first_value}, `{second}` says {second_value}\n  = help: change one snippet's parameters so that they agree, or drop one of the snippets"
            ),
            Error::Output { snippet, message } => {
                write!(f, "snippet `{snippet}` produced invalid output: {message}")
            }
            Error::TooLarge {
                profile,
                raw,
                gzipped,
                limit,
            } => write!(
                f,
                "the payload of profile `{profile}` is {raw} bytes, {gzipped} bytes gzipped: more than EC2's user-data limit of {limit} bytes\n  = help: move large files to the EFS or an S3 object the instance fetches, and keep user-data to the boot logic"
            ),
            Error::Usage { message } => write!(f, "{message}"),
        }
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
        .map(|c| (levenshtein(word, c), c))
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

/// Edit distance counting a swap of two neighbours as one edit.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
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
    }
}
