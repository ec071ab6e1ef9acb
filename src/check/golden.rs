//! Golden files: the compiled payload of every profile, byte for byte, kept
//! in `golden/NAME.yaml` so that a review sees every change to what boots.
//! A golden file is the user-data before compression, readable as it is
//! (cloud-init reads it so too); when the payload is gzipped, what EC2
//! receives is that file gzipped with mtime 0, the same bytes every time.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compile::compile;
use crate::compile::library::Library;
use crate::diagnostics::{Error, Result};

/// How one golden file differs from what the profile compiles to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// The profile compiles to other bytes; `diff` is a unified diff.
    Changed {
        profile: String,
        file: String,
        diff: String,
    },
    /// The profile has no golden file yet.
    Missing { profile: String, file: String },
    /// A golden file whose profile is gone.
    Stale { file: String },
}

/// What `check` found, and what `--bless` wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checked: Vec<String>,
    pub drift: Vec<Drift>,
    /// Files written or removed by `--bless`.
    pub blessed: Vec<String>,
}

/// The golden file of profile `name` under `dir`.
/// Where `check` looks without `--golden`: the project folder's `golden/`,
/// else `golden/` in the current directory.
pub fn default_dir(project: Option<&crate::compile::library::Project>) -> PathBuf {
    project.map_or_else(|| PathBuf::from("golden"), |p| p.root.join("golden"))
}

pub fn golden_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.yaml"))
}

/// Compiles every profile of `library` and compares it with `dir`; with
/// `bless`, rewrites the files that differ and removes stale ones.
pub fn check(library: &Library, dir: &Path, bless: bool) -> Result<Report> {
    let mut report = Report::default();
    let names: Vec<String> = library.profile_names().map(str::to_string).collect();
    for name in &names {
        let compiled = compile(library, name, &[])?;
        let path = golden_path(dir, name);
        let file = path.display().to_string();
        let new = compiled.payload.raw;
        let drift = match fs::read(&path) {
            Ok(old) if old == new => None,
            Ok(old) => Some(Drift::Changed {
                profile: name.clone(),
                file: file.clone(),
                diff: diff(&file, &old, &new),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Drift::Missing {
                profile: name.clone(),
                file: file.clone(),
            }),
            Err(e) => return Err(Error::io(&path, "read golden file", e)),
        };
        report.checked.push(name.clone());
        if let Some(drift) = drift {
            if bless {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
                write_atomically(&path, &new)?;
                report.blessed.push(file);
            } else {
                report.drift.push(drift);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        let mut stale: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "yaml")
                    && p.file_stem()
                        .and_then(|s| s.to_str())
                        .is_some_and(|s| !names.iter().any(|n| n == s))
            })
            .collect();
        stale.sort();
        for path in stale {
            let file = path.display().to_string();
            if bless {
                fs::remove_file(&path)
                    .map_err(|e| Error::io(&path, "remove stale golden file", e))?;
                report.blessed.push(file);
            } else {
                report.drift.push(Drift::Stale { file });
            }
        }
    }
    Ok(report)
}

/// Writes through a temporary file and a rename, so a reader never sees half
/// a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.bootforge-tmp"));
    fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, "write", e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, "write", e))
}

/// Text for a diff: gzip is opened, anything else taken as UTF-8 (lossy).
fn readable(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = String::new();
        if flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut out)
            .is_ok()
        {
            return format!("(gzip, {} bytes, shown decompressed)\n{out}", bytes.len());
        }
    }
    String::from_utf8_lossy(bytes).into_owned()
}

fn diff(file: &str, old: &[u8], new: &[u8]) -> String {
    let old = readable(old);
    let new = readable(new);
    let diff = similar::TextDiff::from_lines(&old, &new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(file, "compiled")
        .to_string();
    if text.is_empty() {
        "(the files differ only in compression)\n".to_string()
    } else {
        text
    }
}
