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

pub mod aws_names;
pub mod catalog;
pub mod claim;
mod cli;
mod compile;
mod duration;
#[cfg(feature = "aws")]
pub mod ec2;
mod error;
mod explain;
mod golden;
pub mod launch;
mod library;
mod merge;
#[cfg(feature = "aws")]
pub mod operate;
pub mod paths;
mod patterns;
mod payload;
mod profile;
#[cfg(feature = "aws")]
pub mod reap;
mod render;
mod schema;
#[cfg(feature = "smoke")]
pub mod smoke;
mod snippet;
mod source_map;
mod validate;
#[cfg(feature = "aws")]
pub mod wait;

pub use cli::run;
pub use compile::{Compiled, ParamValue, RenderedFile, ResolvedSnippet, Section, compile};
pub use duration::Duration;
pub use error::{Error, Location, Result};
pub use explain::Explanation;
pub use golden::{Drift, Report, check};
pub use library::Library;
pub use payload::{BOUNDARY, Part, Payload, USER_DATA_LIMIT, gzip};
pub use profile::{
    Compression, DEFAULT_PROFILE, Instance, Job, LoadedProfile, Origin, Override, Profile,
};
pub use render::quote as shell_quote;
pub use schema::profile_schema;
pub use snippet::{Manifest, Param, ParamKind};
pub use validate::{Diagnostic, Severity, validate};
