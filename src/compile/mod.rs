//! Profile in, payload out: load and merge the profile (`library`,
//! `profile`), resolve and render its snippets (`snippet`, `render`), merge
//! their cloud-config fragments (`merge`) and emit the user-data (`payload`).

pub mod compiler;
pub mod duration;
pub mod explain;
pub mod library;
pub mod merge;
pub mod overrides;
pub(crate) mod parse;
pub mod paths;
pub(crate) mod patterns;
pub mod payload;
pub mod profile;
pub mod render;
pub mod snippet;
pub(crate) mod source_map;

pub use compiler::{Compiled, ParamValue, RenderedFile, ResolvedSnippet, Section, compile};
