//! A job's log on the EFS: which file holds a run's log, whole lines of it
//! from a byte offset (what `logs --json` prints and a page streams), its
//! phase lines read in bounded time, and whether its run has ended.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aws::claim::CLAIM_FILE;
use crate::aws::files::read_json;
use crate::diagnostics::{Error, Result};

/// A log up to this size is read whole for its phase lines; a longer one
/// (a pipeline's output runs to gigabytes) by its head, where the runner's
/// phases start before the pipeline writes, and its tail, where they end.
const WHOLE_LOG: u64 = 2 << 20;
const LOG_HEAD: u64 = 1 << 20;
const LOG_TAIL: u64 = 256 << 10;

/// The text of `path` that holds its phase lines, read in bounded time.
pub(crate) fn phase_lines_of(path: &Path) -> Option<String> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut bytes = Vec::new();
    if size <= WHOLE_LOG {
        file.read_to_end(&mut bytes).ok()?;
    } else {
        (&mut file).take(LOG_HEAD).read_to_end(&mut bytes).ok()?;
        bytes.push(b'\n');
        file.seek(std::io::SeekFrom::Start(size - LOG_TAIL)).ok()?;
        file.read_to_end(&mut bytes).ok()?;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Complete lines of a log from a byte offset, as `logs --offset N --json`
/// prints them: what a page streams, line by line, and resumes from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogChunk {
    /// The log file.
    pub path: PathBuf,
    /// The byte offset `text` starts at, and the one after it (where the
    /// next chunk starts).
    pub offset: u64,
    pub next: u64,
    /// The log's size now.
    pub size: u64,
    /// Whole lines only (a line still being written waits for its end).
    pub text: String,
    /// Whether the run has written its final status: nothing more comes.
    pub ended: bool,
}

/// The most a chunk holds.
pub const CHUNK: u64 = 1 << 20;

/// The whole lines of `path` from `offset` (at most [`CHUNK`] bytes), or,
/// with `tail`, from the first line that starts within the last `tail`
/// bytes. `ended`: whether the run has ended (then a last line without a
/// newline is given too).
pub fn chunk(path: &Path, offset: Option<u64>, tail: Option<u64>, ended: bool) -> Result<LogChunk> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(path, "read", e))?
        .len();
    let (mut start, after_newline) = match (offset, tail) {
        (Some(o), _) => (o.min(size), false),
        (None, Some(t)) if t < size => (size - t, true),
        _ => (0, false),
    };
    let mut bytes = Vec::new();
    file.seek(std::io::SeekFrom::Start(start))
        .and_then(|_| (&mut file).take(CHUNK).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, "read", e))?;
    if after_newline && start > 0 {
        // Opened within a line: from the next one.
        let skip = bytes
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |p| p + 1);
        bytes.drain(..skip);
        start += skip as u64;
    }
    let whole = start + bytes.len() as u64 == size && ended;
    if !whole {
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        bytes.truncate(keep);
    }
    Ok(LogChunk {
        path: path.to_path_buf(),
        offset: start,
        next: start + bytes.len() as u64,
        size,
        text: String::from_utf8_lossy(&bytes).into_owned(),
        ended: ended && start + bytes.len() as u64 == size,
    })
}

/// Whether the run whose files are in `dir` (its `run-id`) has written its
/// final status: `logs --follow` stops there.
pub fn run_ended(dir: &Path) -> bool {
    let instance = std::fs::read_to_string(dir.join("run-id"))
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string));
    read_json(&dir.join("status.json")).is_some_and(|s| {
        s["final"] != false
            && instance.is_some()
            && s["instance_id"].as_str() == instance.as_deref()
    })
}

/// Whether the job in `dir` may still write its current run's log: it is
/// claimed, its launch did not fail, and its run has not ended.
pub fn log_may_come(dir: &Path) -> bool {
    read_json(&dir.join(CLAIM_FILE)).is_some_and(|c| c["failed"].is_null()) && !run_ended(dir)
}

/// The log of run `run` of the job in `dir` (the current one when `None`):
/// `job.log` in the job's directory when its `run-id` is that run's, else
/// in the newest of `runs/*` whose `run-id` is.
pub fn log_of(dir: &Path, run: Option<u32>) -> Result<PathBuf> {
    let run_of = |d: &Path| {
        std::fs::read_to_string(d.join("run-id"))
            .ok()
            .and_then(|t| {
                t.split_whitespace()
                    .nth(2)
                    .and_then(|r| r.parse::<u32>().ok())
            })
    };
    let current = dir.join("job.log");
    let Some(wanted) = run else {
        return if current.is_file() {
            Ok(current)
        } else {
            Err(Error::Usage {
                message: format!(
                    "no log yet in {}: the instance has not written one",
                    dir.display()
                ),
            })
        };
    };
    if run_of(dir) == Some(wanted) && current.is_file() {
        return Ok(current);
    }
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir.join("runs"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| run_of(d) == Some(wanted) && d.join("job.log").is_file())
        .filter_map(|d| {
            let at = std::fs::metadata(d.join("job.log"))
                .and_then(|m| m.modified())
                .ok()?;
            Some((at, d.join("job.log")))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| Error::Usage {
        message: format!("no log of run {wanted} in {} or its runs/", dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_holds_whole_lines_from_its_offset_or_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let c = chunk(&path, Some(0), None, false).unwrap();
        assert_eq!(
            (c.text.as_str(), c.offset, c.next, c.size),
            ("one\ntwo\n", 0, 8, 11)
        );
        assert!(!c.ended);
        // Resumed where it stopped: the unfinished line waits.
        let c = chunk(&path, Some(8), None, false).unwrap();
        assert_eq!((c.text.as_str(), c.next), ("", 8));
        // Once the run ended, the last line comes without its newline.
        let c = chunk(&path, Some(8), None, true).unwrap();
        assert_eq!((c.text.as_str(), c.next, c.ended), ("thr", 11, true));
        // The tail starts at a line, never within one.
        let c = chunk(&path, None, Some(6), true).unwrap();
        assert_eq!((c.text.as_str(), c.offset), ("thr", 8));
        let c = chunk(&path, None, Some(100), false).unwrap();
        assert_eq!(c.offset, 0);
        // An offset past the end (a log replaced by a shorter one) stops at it.
        let c = chunk(&path, Some(999), None, false).unwrap();
        assert_eq!((c.offset, c.next, c.text.as_str()), (11, 11, ""));
    }

    #[test]
    fn the_phase_of_a_long_log_is_read_from_its_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        let mut text = String::from("2026-12-02T10:00:01Z bootforge[j] phase run: start\n");
        text.push_str(&"pipeline output line\n".repeat((WHOLE_LOG / 10) as usize));
        text.push_str("2026-12-02T11:00:00Z bootforge[j] phase run: done in 3599s\n");
        std::fs::write(&path, &text).unwrap();
        let lines = phase_lines_of(&path).unwrap();
        assert!(lines.len() as u64 <= LOG_HEAD + LOG_TAIL + 1);
        // The first phase line is in the head, the last in the tail.
        assert!(lines.starts_with("2026-12-02T10:00:01Z bootforge[j] phase run: start\n"));
        assert!(lines.ends_with("2026-12-02T11:00:00Z bootforge[j] phase run: done in 3599s\n"));
    }

    #[test]
    fn an_earlier_runs_log_is_found_by_its_run_id() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("run-id"), "i-3 boot 2\n").unwrap();
        std::fs::write(d.join("job.log"), "run 2\n").unwrap();
        std::fs::create_dir_all(d.join("runs/i-1")).unwrap();
        std::fs::write(d.join("runs/i-1/run-id"), "i-1 boot 1\n").unwrap();
        std::fs::write(d.join("runs/i-1/job.log"), "run 1\n").unwrap();
        assert_eq!(log_of(d, None).unwrap(), d.join("job.log"));
        assert_eq!(log_of(d, Some(2)).unwrap(), d.join("job.log"));
        assert_eq!(log_of(d, Some(1)).unwrap(), d.join("runs/i-1/job.log"));
        assert!(
            log_of(d, Some(7))
                .unwrap_err()
                .to_string()
                .contains("no log of run 7")
        );
    }
}
