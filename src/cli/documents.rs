//! The documents for programs beside `--json`'s: a failure as one JSON
//! line (`BOOTFORGE_ERRORS=json`), and the JSON Schema of every document
//! the Python API reads (`schema DOCUMENT`).

use crate::check::validate::Diagnostic;
use crate::diagnostics::Result;

/// A failed command's one line on stderr when `BOOTFORGE_ERRORS=json`:
/// what programs (the Python API) read instead of the text diagnostic.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Failure {
    /// The problem's stable code (`unknown-profile`, `bad-set`, `quota`,
    /// `aws`…): what a program tells problems apart by, never the words.
    pub code: String,
    /// The one-line message, as the text diagnostic words it.
    pub message: String,
    /// What to do, when there is advice.
    pub help: Option<String>,
    /// Where the problem is, when it is in a file.
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The value's logical path (`job.timeout`), when there is one.
    pub path: Option<String>,
    /// The process's exit code.
    pub exit_code: i32,
}

impl Failure {
    pub fn of(d: &Diagnostic, exit_code: i32) -> Failure {
        Failure {
            code: d.code.to_string(),
            message: d.message.clone(),
            help: d.help.clone(),
            file: d
                .location
                .as_ref()
                .map(|l| l.file.clone())
                .or_else(|| d.file.clone()),
            line: d.location.as_ref().map(|l| l.line),
            column: d.location.as_ref().map(|l| l.column),
            path: d.path.clone(),
            exit_code,
        }
    }

    /// A command line the parser refused (clap's rendering of it).
    pub fn usage(rendered: &str) -> Failure {
        let mut lines = rendered.trim().lines();
        let first = lines.next().unwrap_or_default();
        let help = lines
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>();
        Failure {
            code: "usage".to_string(),
            message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
            help: (!help.is_empty()).then(|| help.join("; ")),
            file: None,
            line: None,
            column: None,
            path: None,
            exit_code: 2,
        }
    }
}

/// Whether failures are printed as JSON (`BOOTFORGE_ERRORS=json`).
pub fn errors_as_json() -> bool {
    std::env::var_os("BOOTFORGE_ERRORS").is_some_and(|v| v == "json")
}

pub fn print_failure(failure: &Failure) {
    eprintln!(
        "{}",
        serde_json::to_string(failure).expect("a failure serializes to JSON")
    );
}

/// The JSON Schema `schema DOCUMENT` prints.
pub fn schema_of(
    document: super::SchemaOf,
    library: &crate::compile::library::Library,
) -> Result<serde_json::Value> {
    use super::SchemaOf;
    let schema = match document {
        SchemaOf::Profile => return Ok(crate::check::schema::profile_schema(library)),
        SchemaOf::Status => schemars::schema_for!(crate::aws::status::JobStatus),
        SchemaOf::RunStatus => schemars::schema_for!(crate::aws::status::RunStatus),
        SchemaOf::Jobs => schemars::schema_for!(crate::aws::jobs::JobList),
        SchemaOf::Log => schemars::schema_for!(crate::aws::log::LogChunk),
        SchemaOf::Error => schemars::schema_for!(Failure),
        #[cfg(feature = "aws")]
        SchemaOf::Launch | SchemaOf::Advance => schemars::schema_for!(crate::aws::job::Report),
        #[cfg(not(feature = "aws"))]
        SchemaOf::Launch | SchemaOf::Advance => {
            return Err(crate::diagnostics::Error::Environment {
                message: "this bootforge was built without the `aws` feature, which has `launch`"
                    .to_string(),
                help: Some("build it with the default features".to_string()),
            });
        }
    };
    // Every document that carries a `status.json` admits an earlier, a
    // later or a shorter one.
    Ok(crate::aws::status::readers_schema(schema.to_value()))
}
