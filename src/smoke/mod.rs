//! Smoke tests: the exact payload booted under real cloud-init, with
//! systemd as PID 1, in a local container; stand-ins only for what a
//! container cannot have (the EFS, the GPU); a report of what the boot did.
//!
//! - [`image`]: the image recipe and its build;
//! - [`scenarios`]: what each scenario changes and expects;
//! - [`boot`]: the folders a boot shares and the container itself;
//! - [`checks`]: what the boot left, checked;
//! - [`instances`]: local instances, containers of the image that play a
//!   job's EC2 instance (create, list, inspect, terminate);
//! - [`local`]: `launch --local`, the launch flow on top of them.

mod boot;
mod checks;
#[cfg(feature = "aws")]
pub mod fleet;
mod image;
#[cfg(feature = "aws")]
pub mod instances;
#[cfg(feature = "aws")]
pub mod local;
mod scenarios;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;

pub use self::checks::{Check, EfsIo, Timings};
pub use self::image::{IMAGE, ImageBuild, build_image, image, image_tag};
pub use self::scenarios::chosen;
pub use self::scenarios::{Intervention, Ordering, PowerOff, SCENARIOS, Scenario, scenario};
use crate::compile::compile;
use crate::compile::library::Library;
use crate::compile::overrides::Override;
use crate::diagnostics::{Error, Result};
use crate::progress::Event;

fn environment(message: impl Into<String>, help: impl Into<String>) -> Error {
    Error::Environment {
        message: message.into(),
        help: Some(help.into()),
    }
}

/// What one smoke run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub profile: String,
    pub scenario: String,
    /// `debian` or `al2023`: how cloud-init's units were ordered.
    pub ordering: &'static str,
    pub image: String,
    pub payload_sha256: String,
    pub payload_bytes: usize,
    pub checks: Vec<Check>,
    pub timings: Timings,
    /// Bytes read from and written to the EFS stand-in, every mount of it:
    /// a local folder makes reads free where the EFS takes seconds.
    pub efs_io: EfsIo,
    pub status: Option<Json>,
    /// Where the boot's files were kept, when asked to keep them.
    pub kept: Option<PathBuf>,
    /// The container's id (it is removed when the boot ends).
    pub container: String,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn seconds(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |s| format!("{s:.2}s"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "smoke {} / {} ({} ordering): {} ({} bytes, sha256 {}, image {})",
            self.profile,
            self.scenario,
            self.ordering,
            if self.passed() { "passed" } else { "FAILED" },
            self.payload_bytes,
            &self.payload_sha256[..16],
            self.image
        )?;
        for c in &self.checks {
            writeln!(
                f,
                "  [{}] {}: {}",
                if c.passed { "ok" } else { "FAIL" },
                c.name,
                c.detail
            )?;
        }
        let t = &self.timings;
        write!(
            f,
            "  timings: cloud-init start to pipeline start {}, pipeline end to shutdown call {}, pipeline end to power-off {}, deadline to power-off {}, deps {}, boot {}",
            seconds(t.cloud_init_to_pipeline),
            seconds(t.pipeline_end_to_shutdown),
            seconds(t.pipeline_end_to_power_off),
            seconds(t.deadline_to_power_off),
            seconds(t.deps_phase),
            seconds(Some(t.total))
        )?;
        if t.intervention_to_power_off.is_some() {
            write!(
                f,
                ", intervention to power-off {}",
                seconds(t.intervention_to_power_off)
            )?;
        }
        if t.notice_to_efs_status.is_some() {
            write!(
                f,
                ", spot notice to interrupted on the EFS {}",
                seconds(t.notice_to_efs_status)
            )?;
        }
        write!(
            f,
            "\n  EFS: {} bytes read, {} written",
            self.efs_io.read, self.efs_io.written
        )?;
        if let Some(kept) = &self.kept {
            write!(f, "\n  files kept in {}", kept.display())?;
        }
        Ok(())
    }
}

/// Options of a smoke run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep the boot's files (EFS folder, records, logs) in this directory.
    pub keep: Option<PathBuf>,
    /// Give up on a boot after this long (default: past the dead-man's
    /// switch, which must have powered it off by then).
    pub deadline: Option<Duration>,
    /// The user's own folder as the EFS (their pipeline, requirements and
    /// data); nothing but the job writes to it.
    pub efs: Option<PathBuf>,
    /// How cloud-init's units are ordered in the container.
    pub ordering: Ordering,
}

/// Boots profile `name` under scenario `scenario` and checks what happened.
pub fn run(
    library: &Library,
    name: &str,
    scenario: &Scenario,
    sets: &[Override],
    options: &Options,
    on: &mut dyn FnMut(Event),
) -> Result<Report> {
    if options.efs.is_some() && scenario.stand_in {
        return Err(Error::Usage {
            message: format!(
                "scenario `{}` needs bootforge's stand-in pipeline, which is not written into a folder of yours; with --efs, run {}",
                scenario.name,
                scenarios::names(SCENARIOS.iter().filter(|s| !s.stand_in))
            ),
        });
    }
    if let Some(efs) = &options.efs
        && !efs.is_dir()
    {
        return Err(Error::Usage {
            message: format!("--efs {}: no such folder", efs.display()),
        });
    }
    let image = image();
    if !image::image_exists(&image)? {
        return Err(environment(
            format!("the smoke image {image} is not built"),
            "build it with `bootforge smoke image` (it needs root, debootstrap and the machine's Debian mirror)",
        ));
    }
    let mut overrides: Vec<Override> = scenario
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<_>>()?;
    overrides.extend(sets.iter().cloned());
    let compiled = compile(library, name, &overrides)?;
    let job = &compiled.profile.profile.job;

    let tmp = tempfile::tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), "create a directory in", e))?;
    let root = match &options.keep {
        Some(dir) => {
            let dir = dir.join(scenario.name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, "clear", e))?;
            }
            dir
        }
        None => tmp.path().to_path_buf(),
    };
    let mounts = boot::mounts(&compiled);
    let folders = boot::prepare(root, options.efs.as_deref(), &compiled, scenario, &mounts)?;
    let deadline = options.deadline.unwrap_or(Duration::from_secs(
        job.timeout.seconds() + job.grace.seconds() + 180,
    ));
    on(Event::Phase(format!(
        "{}: booting under cloud-init",
        scenario.name
    )));
    let ended = boot::boot(
        &image,
        &compiled,
        scenario,
        options.ordering,
        &folders,
        &mounts,
        deadline,
    )?;
    on(Event::Phase(format!("{}: checking", scenario.name)));

    let mut checks = Vec::new();
    let mut timings = Timings::default();
    let status = checks::inspect(
        &compiled,
        scenario,
        &folders,
        &mounts,
        &ended,
        &mut checks,
        &mut timings,
    );
    Ok(Report {
        profile: compiled.profile.name.clone(),
        scenario: scenario.name.to_string(),
        ordering: options.ordering.name(),
        image,
        payload_sha256: compiled.payload.sha256(),
        payload_bytes: compiled.payload.bytes.len(),
        checks,
        timings,
        efs_io: checks::efs_io(&folders),
        status,
        kept: options.keep.as_ref().map(|_| folders.root.clone()),
        container: ended.container,
    })
}
