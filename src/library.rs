//! Where profiles and snippets come from: the built-in ones embedded at build
//! time, then directories given on the command line, later ones overriding
//! earlier ones by name.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The text of one file and the name it is shown by in messages.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub display: String,
    pub text: String,
}

/// A snippet's files: `snippet.yaml` and its templates, keyed by their path
/// relative to the snippet's directory.
#[derive(Debug, Clone)]
pub struct SnippetFiles {
    pub dir: String,
    pub files: BTreeMap<String, String>,
}

/// Every profile and snippet bootforge knows of.
#[derive(Debug, Clone, Default)]
pub struct Library {
    profiles: BTreeMap<String, SourceFile>,
    snippets: BTreeMap<String, SnippetFiles>,
}

impl Library {
    /// The profiles and snippets built into the binary.
    ///
    /// ```
    /// let library = bootforge::Library::builtin();
    /// assert!(library.profile_names().any(|n| n == "traffic-sign-gpu"));
    /// ```
    pub fn builtin() -> Library {
        let mut library = Library::default();
        for (rel, text) in embedded::PROFILES {
            if let Some(name) = rel.strip_suffix(".yaml").filter(|n| !n.contains('/')) {
                library.profiles.insert(
                    name.to_string(),
                    SourceFile {
                        display: format!("profiles/{rel}"),
                        text: text.to_string(),
                    },
                );
            }
        }
        for (rel, text) in embedded::SNIPPETS {
            if let Some((name, file)) = rel.split_once('/') {
                library
                    .snippets
                    .entry(name.to_string())
                    .or_insert_with(|| SnippetFiles {
                        dir: format!("snippets/{name}"),
                        files: BTreeMap::new(),
                    })
                    .files
                    .insert(file.to_string(), text.to_string());
            }
        }
        library
    }

    /// Adds every `NAME.yaml` of `dir`, replacing profiles of the same name.
    pub fn add_profiles_dir(&mut self, dir: &Path) -> Result<()> {
        for entry in read_dir(dir)? {
            let path = entry.path();
            let Some(name) = yaml_stem(&path) else {
                continue;
            };
            let text = read(&path)?;
            self.profiles.insert(
                name,
                SourceFile {
                    display: path.display().to_string(),
                    text,
                },
            );
        }
        Ok(())
    }

    /// Adds every snippet directory of `dir` (one holding a `snippet.yaml`),
    /// replacing snippets of the same name.
    pub fn add_snippets_dir(&mut self, dir: &Path) -> Result<()> {
        for entry in read_dir(dir)? {
            let path = entry.path();
            if !path.join("snippet.yaml").is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            let mut files = BTreeMap::new();
            collect(&path, &path, &mut files)?;
            self.snippets.insert(
                name,
                SnippetFiles {
                    dir: path.display().to_string(),
                    files,
                },
            );
        }
        Ok(())
    }

    /// Adds one profile from a file path, under the file's stem.
    pub fn add_profile_file(&mut self, path: &Path) -> Result<String> {
        let name = yaml_stem(path).ok_or_else(|| Error::Usage {
            message: format!(
                "{} is not a profile: profile files end in .yaml",
                path.display()
            ),
        })?;
        let text = read(path)?;
        self.profiles.insert(
            name.clone(),
            SourceFile {
                display: path.display().to_string(),
                text,
            },
        );
        Ok(name)
    }

    /// Adds one profile from text, shown in messages as `display`.
    ///
    /// ```
    /// let mut library = bootforge::Library::builtin();
    /// library.add_profile_text("quick", "<celery task>", "extends: traffic-sign-gpu\njob:\n  timeout: 30m\n");
    /// let compiled = bootforge::compile(&library, "quick", &[]).unwrap();
    /// assert!(compiled.cloud_config.contains("TIMEOUT_S=1800"));
    /// ```
    pub fn add_profile_text(&mut self, name: &str, display: &str, text: &str) {
        self.profiles.insert(
            name.to_string(),
            SourceFile {
                display: display.to_string(),
                text: text.to_string(),
            },
        );
    }

    pub fn profile(&self, name: &str) -> Option<&SourceFile> {
        self.profiles.get(name)
    }

    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    pub fn snippet(&self, name: &str) -> Option<&SnippetFiles> {
        self.snippets.get(name)
    }

    pub fn snippet_names(&self) -> impl Iterator<Item = &str> {
        self.snippets.keys().map(String::as_str)
    }
}

fn yaml_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".yaml")
        .filter(|stem| !stem.is_empty() && path.is_file())
        .map(str::to_string)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    let mut entries: Vec<_> = entries
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(dir, "read directory", e))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))
}

fn collect(base: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> Result<()> {
    for entry in read_dir(dir)? {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, files)?;
        } else {
            let rel = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(rel, read(&path)?);
        }
    }
    Ok(())
}
