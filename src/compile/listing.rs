//! What `list` shows: every profile and snippet the library finds, with
//! its summary (or why it is invalid) and where it comes from.

use crate::compile::library::Library;
use crate::compile::profile::load;
use crate::compile::snippet::Snippet;
use crate::diagnostics::Error;

/// One line of `list`: a profile or snippet, its summary (or why it is
/// invalid), and where it comes from (`built-in` or its path).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub name: String,
    pub summary: String,
    pub from: String,
}

/// The first line of an error, for a one-line listing.
fn invalid(e: &Error) -> String {
    format!("(invalid: {})", e.to_string().lines().next().unwrap_or(""))
}

/// Every profile, by name, for `list`.
pub fn profiles(library: &Library) -> Vec<Listed> {
    library
        .profile_names()
        .map(|name| Listed {
            name: name.to_string(),
            summary: load(library, name, &[]).map_or_else(|e| invalid(&e), |p| p.profile.summary),
            from: library
                .profile(name)
                .map(|f| match f.path {
                    Some(_) => f.display.clone(),
                    None => "built-in".to_string(),
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Every snippet, by name, for `list snippets`.
pub fn snippets(library: &Library) -> Vec<Listed> {
    library
        .snippet_names()
        .filter_map(|name| {
            let files = library.snippet(name)?;
            Some(Listed {
                name: name.to_string(),
                summary: Snippet::load(name, files)
                    .map_or_else(|e| invalid(&e), |s| s.manifest.summary),
                from: if files.from == "built-in" {
                    files.from.clone()
                } else {
                    files.dir.clone()
                },
            })
        })
        .collect()
}
