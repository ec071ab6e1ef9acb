//! Files that several launching hosts change through the EFS: a lock made
//! by exclusive create (which NFSv4 honours), broken by rename once its
//! holder is taken for dead, and a whole file replaced by writing a
//! temporary beside it and renaming it over (atomic on NFS too; O_APPEND
//! is not, across clients). The claim of a job and the index of jobs are
//! both kept this way.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clock::now;
use crate::diagnostics::{Error, Result};

/// A lock older than this was left by a process that died holding it.
pub const LOCK_STALE: Duration = Duration::from_secs(30);

/// This process, as a holder of locks and claims: `host:pid`.
pub fn holder() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// `holder()` as a part of a file name.
fn holder_in_name() -> String {
    holder().replace([':', '/'], "-")
}

/// A lock file, released when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock `path`, waiting while another process holds it and
    /// breaking it once it is older than [`LOCK_STALE`]; `what` names what
    /// it guards, for the error when it stays taken.
    pub fn take(path: &Path, what: &str) -> Result<Lock> {
        let start = Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{} {}", holder(), now());
                    return Ok(Lock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| m.elapsed().ok());
                    if age.is_some_and(|a| a > LOCK_STALE) {
                        // Broken by renaming: of two breakers, one succeeds.
                        let aside = path.with_file_name(format!(
                            "{}.stale.{}",
                            path.file_name().unwrap_or_default().to_string_lossy(),
                            holder_in_name()
                        ));
                        if fs::rename(path, &aside).is_ok() {
                            let _ = fs::remove_file(&aside);
                        }
                        continue;
                    }
                    if start.elapsed() > LOCK_STALE * 2 {
                        return Err(Error::Environment {
                            message: format!("{} stays locked", path.display()),
                            help: Some(format!(
                                "another bootforge is stuck holding {what}; remove the file if none runs"
                            )),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io(path, "create", e)),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The JSON document in `path`, when it is there and reads as JSON (a
/// file another host is writing, or one from elsewhere, may not).
pub fn read_json(path: &Path) -> Option<serde_json::Value> {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

/// Replaces `path` with `text` (and a final newline) whole: written beside
/// it, synced, renamed over it.
pub fn replace(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        holder_in_name()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, "write", e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_lock_is_broken_and_a_held_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        fs::write(&path, "gone:1 0\n").unwrap();
        let old = std::time::SystemTime::now() - LOCK_STALE * 3;
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let lock = Lock::take(&path, "the test").unwrap();
        assert!(fs::read_to_string(&path).unwrap().starts_with(&holder()));
        let path2 = path.clone();
        let waiter = std::thread::spawn(move || Lock::take(&path2, "the test").map(|_| ()));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "a fresh lock is waited for");
        drop(lock);
        waiter.join().unwrap().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn replace_leaves_no_temporary_and_the_whole_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        replace(&path, "{}").unwrap();
        replace(&path, "{\"a\": 1}").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\": 1}\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
