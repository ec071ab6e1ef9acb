//! Integration tests: one binary, one module per capability. They drive the
//! real `bootforge` binary through [`Test`].

#[cfg(feature = "aws")]
mod advance;
mod architecture;
#[cfg(all(feature = "smoke", feature = "aws"))]
mod celery;
mod cli;
mod compile;
mod docs;
#[cfg(feature = "aws")]
mod documents;
#[cfg(feature = "aws")]
mod ec2_double;
mod fuzz;
mod golden;
mod imds;
#[cfg(feature = "aws")]
mod jobs;
#[cfg(feature = "aws")]
mod launch;
#[cfg(all(feature = "smoke", feature = "aws"))]
mod local;
#[cfg(feature = "aws")]
mod one_job;
mod project;
#[cfg(feature = "aws")]
mod proxy;
#[cfg(all(feature = "smoke", feature = "aws"))]
mod python;
#[cfg(feature = "aws")]
mod retry;
mod runner;
#[cfg(feature = "smoke")]
mod smoke;
mod static_checks;
mod validate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where `profiles/`, `golden/` and `tests/` are).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// A run of the `bootforge` binary.
pub struct Test {
    command: Command,
}

impl Default for Test {
    fn default() -> Self {
        Test::new()
    }
}

impl Test {
    pub fn new() -> Test {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bootforge"));
        // Network tests only ever target loopback: a command that asks AWS
        // (`cost` of a spot profile does) reaches a closed loopback port
        // and never the metadata service, unless the test points it at
        // its emulator.
        command
            .current_dir(root())
            .env_remove("BOOTFORGE_PROFILES")
            .env_remove("BOOTFORGE_SNIPPETS")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        Test { command }
    }

    /// With the fixture profiles and snippets added.
    pub fn with_fixtures() -> Test {
        let mut t = Test::new();
        t.arg("--profiles")
            .arg(fixtures().join("profiles"))
            .arg("--snippets")
            .arg(fixtures().join("snippets"));
        t
    }

    pub fn arg(&mut self, arg: impl AsRef<std::ffi::OsStr>) -> &mut Test {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Test
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Test {
        self.command.env(key, value);
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Test {
        self.command.current_dir(dir);
        self
    }

    pub fn env_remove(&mut self, key: &str) -> &mut Test {
        self.command.env_remove(key);
        self
    }

    /// Starts the command without waiting for it.
    pub fn spawn(&mut self) -> std::process::Child {
        self.command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start bootforge")
    }

    pub fn run(&mut self) -> Run {
        let output = self.command.output().expect("run bootforge");
        Run { output }
    }
}

/// What a run printed and returned.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output
            .status
            .code()
            .expect("bootforge exits, it is not killed")
    }

    pub fn stdout(&self) -> String {
        String::from_utf8(self.output.stdout.clone()).expect("stdout is UTF-8")
    }

    pub fn stderr(&self) -> String {
        String::from_utf8(self.output.stderr.clone()).expect("stderr is UTF-8")
    }

    /// Asserts exit code 0 and returns the run.
    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(
            self.code(),
            0,
            "expected success; stderr:\n{}",
            self.stderr()
        );
        self
    }

    /// Asserts `code`, that nothing panicked, and returns the run.
    #[track_caller]
    pub fn failure(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "expected exit code {code}; stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        assert!(!self.stderr().contains("panicked"), "{}", self.stderr());
        self
    }

    /// stderr with the machine's paths replaced, for snapshots.
    pub fn stderr_scrubbed(&self) -> String {
        scrub(&self.stderr())
    }
}

/// Replaces the repository root and temporary directories in `text`.
pub fn scrub(text: &str) -> String {
    let text = text.replace(&root().display().to_string(), "[ROOT]");
    let tmp = std::env::temp_dir().display().to_string();
    let pattern = format!("{}/[^/ \n:]+", regex::escape(tmp.trim_end_matches('/')));
    let re = regex::Regex::new(&pattern).expect("valid pattern");
    re.replace_all(&text, "[TMP]").into_owned()
}

/// Asserts that `text` contains `needle`, showing `text` when it does not.
#[track_caller]
pub fn contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "no {needle:?} in:\n{text}");
}

/// Whether `tool` is on PATH. The full test run (`BOOTFORGE_REQUIRE_ALL=1`)
/// fails when it is not; plain `cargo test` says what it skipped.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("BOOTFORGE_REQUIRE_ALL").is_some() {
            panic!("{tool} is required by the full test run (scripts/test installs it)");
        }
        eprintln!("skipped: {tool} is not installed (scripts/test installs it)");
    }
    found
}

/// The built-in library plus the fixture snippets and profiles, and the
/// corpus's valid profiles.
pub fn fixture_library() -> bootforge::Library {
    let mut library = bootforge::Library::builtin();
    library
        .add_profiles_dir(&fixtures().join("profiles"))
        .unwrap();
    library
        .add_snippets_dir(&fixtures().join("snippets"))
        .unwrap();
    library
        .add_profiles_dir(&root().join("tests/corpus-valid"))
        .unwrap();
    library
}

/// The profiles `validate` must pass: the repository's and the corpus's
/// valid cases.
pub fn valid_profiles() -> Vec<String> {
    let mut names = Vec::new();
    for dir in ["profiles", "tests/corpus-valid"] {
        let mut found: Vec<String> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .to_string()
            })
            .collect();
        found.sort();
        names.extend(found);
    }
    names
}
