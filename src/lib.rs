//! bootforge compiles, tests and launches the boot payload of one-shot GPU
//! instances on EC2.
//!
//! A YAML [`Profile`] picks snippets (minijinja templates with typed
//! parameters) and sets their values; [`compile`] renders and merges them
//! into deterministic cloud-init user-data.
//!
//! ```
//! let library = bootforge::Library::builtin();
//! let compiled = bootforge::compile(&library, bootforge::DEFAULT_PROFILE, &[]).unwrap();
//! assert!(compiled.payload.bytes.len() <= bootforge::USER_DATA_LIMIT);
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]
// Errors end the command that meets them; their size costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod aws;
pub mod check;
mod cli;
pub mod clock;
pub mod compile;
pub mod diagnostics;
pub mod progress;
#[cfg(feature = "smoke")]
pub mod smoke;

pub use check::golden::{Drift, Report, check};
pub use check::schema::profile_schema;
pub use check::validate::{Diagnostic, Severity, validate};
pub use cli::run;
pub use compile::duration::Duration;
pub use compile::explain::Explanation;
pub use compile::library::Library;
pub use compile::model::{Compression, DEFAULT_PROFILE, Instance, Job, Market, Profile};
pub use compile::overrides::Override;
pub use compile::payload::{BOUNDARY, Part, Payload, SIZE_BUDGET, USER_DATA_LIMIT, gzip};
pub use compile::profile::LoadedProfile;
pub use compile::provenance::Origin;
pub use compile::render::quote as shell_quote;
pub use compile::snippet::{Manifest, Param, ParamKind};
pub use compile::{Compiled, ParamValue, RenderedFile, ResolvedSnippet, Section, compile};
pub use diagnostics::{Error, Location, Result};
