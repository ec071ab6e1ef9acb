//! Is it right: the checks on a profile and its payload (`validate`, with
//! the instance catalog and AWS's names), the profile format's JSON Schema,
//! and the golden files. Their problems are the ground floor's
//! `diagnostics`.

pub mod aws_names;
pub mod catalog;
pub mod golden;
pub mod schema;
pub mod validate;
