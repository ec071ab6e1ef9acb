//! Where profiles and snippets come from: the built-in ones embedded at build
//! time, then the user's project folder (the nearest directory, from the
//! current one up, holding `profiles/`, `snippets/` or `golden/`, as git and
//! just find theirs), then directories given on the command line; later
//! ones override earlier ones by name.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::diagnostics::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The text of one file and the name it is shown by in messages.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub display: String,
    pub text: String,
    /// The file on disk it was read from (none for built-in ones).
    pub path: Option<PathBuf>,
}

/// A snippet's files: `snippet.yaml` and its templates, keyed by their path
/// relative to the snippet's directory.
#[derive(Debug, Clone)]
pub struct SnippetFiles {
    pub dir: String,
    pub files: BTreeMap<String, String>,
    /// Where it comes from: `built-in`, or its directory.
    pub from: String,
}

/// A user's project folder: the nearest directory, from `start` up, that
/// holds `profiles/`, `snippets/` or `golden/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    pub fn find(start: &Path) -> Option<Project> {
        start
            .ancestors()
            .find(|dir| {
                ["profiles", "snippets", "golden"]
                    .iter()
                    .any(|sub| dir.join(sub).is_dir())
            })
            .map(|dir| Project {
                root: dir.to_path_buf(),
            })
    }

    /// `root/sub` when it is a directory.
    pub fn dir(&self, sub: &str) -> Option<PathBuf> {
        Some(self.root.join(sub)).filter(|d| d.is_dir())
    }
}

/// `path` as messages show it: relative to the current directory when below
/// it, as written otherwise.
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
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
                        path: None,
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
                        from: "built-in".to_string(),
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
            self.profiles.insert(name, source(&path)?);
        }
        Ok(())
    }

    /// The built-in profiles and snippets, then the project's (found from
    /// `start` up), then `profiles` and `snippets` directories in order.
    pub fn discover(
        start: &Path,
        profiles: &[PathBuf],
        snippets: &[PathBuf],
    ) -> Result<(Library, Option<Project>)> {
        let mut library = Library::builtin();
        let project = Project::find(start);
        if let Some(project) = &project {
            if let Some(dir) = project.dir("profiles") {
                library.add_profiles_dir(&dir)?;
            }
            if let Some(dir) = project.dir("snippets") {
                library.add_snippets_dir(&dir)?;
            }
        }
        for dir in profiles {
            library.add_profiles_dir(dir)?;
        }
        for dir in snippets {
            library.add_snippets_dir(dir)?;
        }
        Ok((library, project))
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
                    dir: shown(&path),
                    files,
                    from: shown(dir),
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
        self.profiles.insert(name.clone(), source(path)?);
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
                path: None,
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

fn source(path: &Path) -> Result<SourceFile> {
    Ok(SourceFile {
        display: shown(path),
        text: read(path)?,
        path: Some(path.to_path_buf()),
    })
}

/// The profile `name` beside the file `beside` (`extends` of a profile
/// given by path finds its sibling first).
pub fn sibling(beside: &SourceFile, name: &str) -> Option<SourceFile> {
    let path = beside.path.as_ref()?.with_file_name(format!("{name}.yaml"));
    path.is_file().then(|| source(&path).ok()).flatten()
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
