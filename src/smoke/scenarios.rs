//! The smoke scenarios: what each changes in the world around the payload
//! (the files on the EFS, the stand-ins' switches, pip's index, an earlier
//! run's leftovers), never the payload but for short waits, and what the
//! boot must end in.

use serde::Serialize;

use crate::diagnostics::{Error, Result};

/// What powers the instance off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerOff {
    /// The runner's finalizer calls `shutdown -h now`, once, first.
    Trap,
    /// The runner is gone: cloud-init's `power_state` after the final stage.
    Backstop,
    /// The harness, from outside, as EC2 does when it terminates or stops
    /// an instance (systemd is asked to power off: SIGRTMIN+4).
    Outside,
}

/// What the harness does to the boot once the pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intervention {
    None,
    /// SIGKILL the job runner, as the OOM killer would: no trap runs.
    KillRunner,
    /// Power the instance off from outside (a terminate, a stop).
    PowerOff,
    /// A spot interruption: the notice on the metadata service, the action
    /// `warning` seconds later (two minutes on EC2), then the power-off
    /// from outside if the instance is still up.
    SpotNotice {
        warning: u64,
    },
}

/// How cloud-init's units are ordered in the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ordering {
    /// Debian's (and Ubuntu's): `Before=sysinit.target`.
    #[default]
    Debian,
    /// Amazon Linux 2023's (cloud-init 22.2.2's templates for its variant:
    /// after sysinit.target), and `power_state` doing nothing, as reported
    /// there (amazon-linux-2023 #304).
    Al2023,
}

impl Ordering {
    /// The ordering called `name` (`debian`, `al2023`).
    pub fn named(name: &str) -> Result<Ordering> {
        [Ordering::Debian, Ordering::Al2023]
            .into_iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| Error::Usage {
                message: format!("no ordering `{name}`; the orderings are debian, al2023"),
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            Ordering::Debian => "debian",
            Ordering::Al2023 => "al2023",
        }
    }
}

/// What a scenario does to the boot, and what it must end in.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    /// `--set` values the scenario needs (a short budget, short waits).
    pub sets: &'static [&'static str],
    /// How the pipeline stand-in behaves (its `smoke-mode` file).
    pub pipeline: &'static str,
    /// What `requirements_gpu.txt` holds; `None` for no file.
    pub requirements: Option<&'static str>,
    /// Every EFS mount fails.
    pub no_efs: bool,
    /// The mount of this EFS path fails, the others work.
    pub efs_fail: Option<&'static str>,
    /// `nvidia-smi` never answers.
    pub no_gpu: bool,
    /// The job directory holds an earlier run's files and the state
    /// directory a boot stamp of another instance.
    pub stale: bool,
    /// What the harness does once the pipeline runs.
    pub intervention: Intervention,
    /// The outcome in `status.json`; `None` when no status can be written.
    pub outcome: Option<&'static str>,
    pub exit_code: i64,
    /// The phases the status lists, when the scenario decides them.
    pub phases: Option<&'static [&'static str]>,
    /// Whether the status and log reach the EFS.
    pub on_efs: bool,
    /// Whether the requirements are installed (pip or uv runs).
    pub pip: bool,
    /// Whether the image's uv wheel is in pip's index (the runner can
    /// install uv); without it the runner falls back to pip.
    pub uv: bool,
    /// The EFS stand-in holds every rename of a dot-named directory this
    /// many seconds: two jobs filling one cache entry overlap.
    pub efs_rename_delay: Option<u32>,
    pub power_off: PowerOff,
    /// At most this many seconds from the pipeline's end to the power-off
    /// (the container stopping), on top of the profile's `kill_after`.
    pub end_to_power_off: Option<f64>,
    /// Whether the scenario needs bootforge's stand-in pipeline (it cannot
    /// run on a folder of the user's own, `--efs`).
    pub stand_in: bool,
}

const BASE: Scenario = Scenario {
    name: "",
    summary: "",
    sets: &[],
    pipeline: "ok",
    requirements: Some("bootforge_fixture==1.0\n"),
    no_efs: false,
    efs_fail: None,
    no_gpu: false,
    stale: false,
    intervention: Intervention::None,
    outcome: Some("succeeded"),
    exit_code: 0,
    phases: Some(&["mount", "deps", "gpu", "run"]),
    on_efs: true,
    pip: true,
    uv: true,
    efs_rename_delay: None,
    power_off: PowerOff::Trap,
    end_to_power_off: Some(15.0),
    stand_in: true,
};

/// Every scenario, in the order they run by default.
pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ok",
        summary: "everything works; the payload is the one launched",
        stand_in: false,
        ..BASE
    },
    Scenario {
        name: "fail",
        summary: "the pipeline exits 3",
        pipeline: "fail",
        outcome: Some("failed"),
        exit_code: 3,
        ..BASE
    },
    Scenario {
        name: "hang",
        summary: "the pipeline ignores SIGTERM past a 20-second budget",
        sets: &["job.timeout=20s", "job.kill_after=3s", "job.grace=2m"],
        pipeline: "hang",
        requirements: None,
        pip: false,
        outcome: Some("timed_out"),
        exit_code: 137,
        end_to_power_off: None,
        ..BASE
    },
    Scenario {
        name: "no-requirements",
        summary: "no requirements_gpu.txt: the step is skipped, pip never runs",
        requirements: None,
        pip: false,
        ..BASE
    },
    Scenario {
        name: "bad-requirements",
        summary: "pip cannot install a requirement (a local wheelhouse, never the network)",
        requirements: Some("bootforge-no-such-package==1.0\n"),
        outcome: Some("deps_failed"),
        exit_code: 1,
        phases: Some(&["mount", "deps"]),
        end_to_power_off: None,
        ..BASE
    },
    Scenario {
        name: "no-uv",
        summary: "pip's index serves no uv: the runner installs the requirements with pip, with a warning",
        uv: false,
        ..BASE
    },
    Scenario {
        name: "fill-race",
        summary: "renames on the EFS held 20s: two jobs run at once on one folder (--efs) fill one cache entry, one wins",
        efs_rename_delay: Some(20),
        stand_in: false,
        ..BASE
    },
    Scenario {
        name: "no-efs",
        summary: "the mount helper fails: the status on the console and the local disk",
        sets: &["snippets.efs-mount.attempts=2"],
        no_efs: true,
        outcome: Some("mount_failed"),
        exit_code: 1,
        phases: Some(&["mount"]),
        on_efs: false,
        pip: false,
        end_to_power_off: None,
        stand_in: false,
        ..BASE
    },
    Scenario {
        name: "no-gpu",
        summary: "nvidia-smi never answers: the phases stop at gpu",
        sets: &["snippets.gpu-ready.wait_seconds=5"],
        no_gpu: true,
        requirements: None,
        pip: false,
        outcome: Some("gpu_missing"),
        exit_code: 1,
        phases: Some(&["mount", "deps", "gpu"]),
        end_to_power_off: None,
        stand_in: false,
        ..BASE
    },
    Scenario {
        name: "background-child",
        summary: "the pipeline exits 0 leaving a process that holds its output",
        sets: &["job.kill_after=5s"],
        pipeline: "background-child",
        requirements: None,
        pip: false,
        ..BASE
    },
    Scenario {
        name: "runner-killed",
        summary: "the job runner is SIGKILLed mid-run: the backstop powers off",
        pipeline: "wait",
        requirements: None,
        pip: false,
        intervention: Intervention::KillRunner,
        outcome: None,
        exit_code: 0,
        phases: None,
        power_off: PowerOff::Backstop,
        end_to_power_off: None,
        ..BASE
    },
    Scenario {
        name: "stale-run",
        summary: "an earlier run's files in the job directory and an old boot stamp: this run's status, the old one kept",
        requirements: None,
        pip: false,
        stale: true,
        ..BASE
    },
    Scenario {
        name: "log-fs-only",
        summary: "the recordings mount works, the application's does not: mount_failed, the status on the EFS",
        sets: &["snippets.efs-mount.attempts=2"],
        efs_fail: Some("/app"),
        outcome: Some("mount_failed"),
        exit_code: 1,
        phases: Some(&["mount"]),
        pip: false,
        end_to_power_off: None,
        ..BASE
    },
    Scenario {
        name: "interrupted",
        summary: "the instance is powered off from outside while the pipeline runs: interrupted on the EFS",
        sets: &["job.kill_after=10s"],
        pipeline: "checkpoint",
        requirements: None,
        pip: false,
        intervention: Intervention::PowerOff,
        outcome: Some("interrupted"),
        exit_code: 143,
        power_off: PowerOff::Outside,
        end_to_power_off: None,
        ..BASE
    },
    Scenario {
        name: "spot-interruption",
        summary: "a spot notice while the pipeline runs: SIGTERM to checkpoint, interrupted on the EFS before the action",
        sets: &["job.kill_after=5s"],
        pipeline: "checkpoint",
        requirements: None,
        pip: false,
        intervention: Intervention::SpotNotice { warning: 60 },
        outcome: Some("interrupted"),
        exit_code: 143,
        end_to_power_off: Some(15.0),
        ..BASE
    },
    Scenario {
        name: "efs-hangs-at-finalize",
        summary: "the EFS stops answering as the job ends: powered off within kill_after + a minute",
        pipeline: "freeze-efs",
        requirements: None,
        pip: false,
        on_efs: false,
        end_to_power_off: Some(60.0),
        ..BASE
    },
];

/// The scenario called `name`.
pub fn scenario(name: &str) -> Result<&'static Scenario> {
    SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::Usage {
            message: format!(
                "no smoke scenario `{name}`; the scenarios are {}",
                names(SCENARIOS.iter())
            ),
        })
}

/// The scenarios a `smoke` run boots: those `names` asks for; when none,
/// every scenario, or only `ok` when the EFS is the user's own folder (the
/// other scenarios bring their own pipeline).
pub fn chosen(names: &[String], own_efs: bool) -> Result<Vec<&'static Scenario>> {
    match (names.is_empty(), own_efs) {
        (true, true) => Ok(vec![scenario("ok")?]),
        (true, false) => Ok(SCENARIOS.iter().collect()),
        (false, _) => names.iter().map(|s| scenario(s)).collect(),
    }
}

/// The names of `scenarios`, comma-separated.
pub fn names<'a>(scenarios: impl Iterator<Item = &'a Scenario>) -> String {
    scenarios.map(|s| s.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for s in SCENARIOS {
            assert_eq!(scenario(s.name).unwrap().name, s.name);
            assert_eq!(SCENARIOS.iter().filter(|t| t.name == s.name).count(), 1);
        }
        assert!(scenario("explode").is_err());
    }

    #[test]
    fn a_scenario_without_a_status_expects_the_backstop() {
        for s in SCENARIOS {
            assert_eq!(
                s.outcome.is_none(),
                s.power_off == PowerOff::Backstop,
                "{}",
                s.name
            );
        }
    }
}
