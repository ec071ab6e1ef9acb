//! Profile in, payload out: find the files (`library`), read one file's
//! YAML (`parse`), load the profile with its parents and `--set` applied
//! (`profile`, `overrides`) into the format's types (`model`), recording
//! where each value came from (`provenance`); resolve and render its
//! snippets (`snippet`, `render`), merge their cloud-config fragments
//! (`merge`) and emit the user-data (`payload`); `compiler` runs the
//! pipeline, `explain` and `listing` describe it.
//!
//! The leaves (`model`, `provenance`, `source_map`, `duration`,
//! `patterns`, `paths`) import no sibling; no two siblings import each
//! other (`tests/integration/architecture.rs`).

pub mod compiler;
pub mod duration;
pub mod explain;
pub mod library;
pub mod listing;
pub mod merge;
pub mod model;
pub mod overrides;
pub(crate) mod parse;
pub mod paths;
pub(crate) mod patterns;
pub mod payload;
pub mod profile;
pub mod provenance;
pub mod render;
pub mod snippet;
pub(crate) mod source_map;

pub use compiler::{Compiled, ParamValue, RenderedFile, ResolvedSnippet, Section, compile};
