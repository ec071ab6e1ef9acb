//! Is it right: the diagnostics every command reports (`diagnostics`),
//! the checks on a profile and its payload (`validate`, with the instance
//! catalog and AWS's names), the profile format's JSON Schema, and the
//! golden files.

pub mod aws_names;
pub mod catalog;
pub mod diagnostics;
pub mod golden;
pub mod schema;
pub mod validate;
