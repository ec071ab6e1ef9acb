//! What a boot left behind, checked against its scenario: the dead-man's
//! switch, the status (on the console, the EFS, the local disk), who powered
//! off and when, cloud-init's own verdict, and the scenario's own promise.

use std::fs;
use std::path::Path;

use serde::Serialize;
use serde_json::Value as Json;

use super::boot::{EfsMount, Ended, Folders, STALE_STATUS};
use super::scenarios::{Intervention, PowerOff, Scenario};
use crate::compile::Compiled;

/// One check of a smoke run.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Timings read from the boot, in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// cloud-init's first stage starting → the pipeline starting.
    pub cloud_init_to_pipeline: Option<f64>,
    /// The pipeline's end → the finalizer's `shutdown` call.
    pub pipeline_end_to_shutdown: Option<f64>,
    /// The pipeline's end → the container stopping (the power-off).
    pub pipeline_end_to_power_off: Option<f64>,
    /// The job's deadline (boot + timeout) → the power-off.
    pub deadline_to_power_off: Option<f64>,
    /// The `deps` phase, as the status reports it.
    pub deps_phase: Option<f64>,
    /// A spot notice → the job's status on the EFS saying `interrupted`.
    pub notice_to_efs_status: Option<f64>,
    /// What the harness did (a SIGKILL, a power-off from outside, a spot
    /// notice) → the power-off.
    pub intervention_to_power_off: Option<f64>,
    /// The whole boot, container start to stop.
    pub total: f64,
}

/// Bytes through the EFS stand-in during one boot.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct EfsIo {
    pub read: u64,
    pub written: u64,
}

/// What the EFS stand-in counted, summed over its mounts (one file each in
/// the records' `efs-io/`).
pub fn efs_io(folders: &Folders) -> EfsIo {
    let mut io = EfsIo::default();
    for entry in fs::read_dir(folders.records.join("efs-io"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(counts) = serde_json::from_str::<Json>(&read(&entry.path())) else {
            continue;
        };
        io.read += counts["read"].as_u64().unwrap_or_default();
        io.written += counts["written"].as_u64().unwrap_or_default();
    }
    io
}

fn seconds_or_dash(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |t| format!("{t:.1}s"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// `NAME EPOCH` lines of the records' timeline: the first EPOCH of NAME.
fn at(timeline: &str, name: &str) -> Option<f64> {
    timeline
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .next()
}

/// One recorded `shutdown`-family call: when, and the command line.
struct Call {
    at: f64,
    line: String,
}

fn calls(text: &str) -> Vec<Call> {
    text.lines()
        .filter_map(|l| {
            let (at, line) = l.split_once(' ')?;
            Some(Call {
                at: at.parse().ok()?,
                line: line.to_string(),
            })
        })
        .collect()
}

/// Checks what the boot left and fills `checks` and `timings`; returns the
/// status the job wrote, if any.
pub fn inspect(
    compiled: &Compiled,
    scenario: &Scenario,
    folders: &Folders,
    mounts: &[EfsMount],
    ended: &Ended,
    checks: &mut Vec<Check>,
    timings: &mut Timings,
) -> Option<Json> {
    let job = &compiled.profile.profile.job;
    let mut check = |name: &str, passed: bool, detail: String| {
        checks.push(Check {
            name: name.to_string(),
            passed,
            detail,
        })
    };
    let timeline = read(&folders.records.join("timeline"));
    let shutdowns = calls(&read(&folders.records.join("shutdown.log")));
    let console = read(&folders.log.join("cloud-init-output.log"));
    let job_log_dir = folders.on_efs(mounts, &format!("{}/{}", job.log_dir, job.id));

    // The dead-man's switch: armed at once, from this boot, for the budget.
    let budget = job.timeout.seconds()
        + job.grace.seconds()
        + compiled
            .param("deadman", "extra_minutes")
            .and_then(serde_yaml_ng::Value::as_u64)
            .unwrap_or(0)
            * 60;
    let armed = read(&folders.state.join("deadman"));
    let stamp: Vec<String> = read(&folders.state.join("boot"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let started: Option<u64> = stamp.get(2).and_then(|s| s.parse().ok());
    let deadline: Option<u64> = stamp.get(3).and_then(|s| s.parse().ok());
    check(
        "dead-man's switch armed",
        armed.trim()
            == format!("bootforge: dead-man's switch armed: power-off in {budget}s via systemd")
            && stamp.first() == Some(&folders.instance_id)
            && started.zip(deadline).is_some_and(|(s, d)| d == s + budget),
        format!("{} (stamp: {})", armed.trim(), stamp.join(" ")),
    );

    let printed = console
        .lines()
        .find_map(|l| l.strip_prefix("bootforge-status: "))
        .and_then(|s| serde_json::from_str::<Json>(s).ok());
    check(
        "job runner ran",
        console.contains(&format!("bootforge[{}] job {} starts", job.id, job.id)),
        "its first line is on the console".to_string(),
    );

    // The status: on the console, and in the job directory (or locally).
    let local: Option<Json> = serde_json::from_str(&read(
        &folders.state.join("jobs").join(&job.id).join("status.json"),
    ))
    .ok();
    let on_efs: Option<Json> = job_log_dir
        .as_ref()
        .and_then(|d| serde_json::from_str(&read(&d.join("status.json"))).ok());
    let status = if scenario.on_efs {
        on_efs.clone()
    } else {
        local.clone()
    };
    match scenario.outcome {
        Some(outcome) => {
            let s = status.clone().unwrap_or(Json::Null);
            let phases: Vec<&str> = s["phases"]
                .as_object()
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let instance_type = compiled.profile.profile.instance.types.first();
            check(
                "status.json",
                s["outcome"] == outcome
                    && s["exit_code"] == scenario.exit_code
                    && s["instance_id"] == folders.instance_id.as_str()
                    && s["boot_id"].as_str().is_some_and(|b| b.len() == 36)
                    && instance_type.is_some_and(|t| s["instance_type"] == t.as_str())
                    && scenario.phases.is_none_or(|want| phases == want)
                    && printed.as_ref() == Some(&s)
                    && local.as_ref() == Some(&s),
                format!(
                    "outcome {} exit code {} phases {} (expected {outcome} {}{}), this instance's, the same on the console and the local disk",
                    s["outcome"],
                    s["exit_code"],
                    phases.join(","),
                    scenario.exit_code,
                    scenario
                        .phases
                        .map(|p| format!(" {}", p.join(",")))
                        .unwrap_or_default()
                ),
            );
        }
        None => check(
            "no status",
            printed.is_none() && local.is_none() && on_efs.is_none(),
            "the runner died: nothing could write a status".to_string(),
        ),
    }
    let log = job_log_dir.as_ref().map(|d| d.join("job.log"));
    let log_there = log.as_ref().is_some_and(|l| l.is_file());
    check(
        "on the EFS",
        match (scenario.on_efs, scenario.outcome) {
            (true, Some(_)) => log_there && on_efs.is_some(),
            (true, None) => log_there,
            (false, _) => on_efs.is_none(),
        },
        if scenario.on_efs {
            format!(
                "status.json and job.log in {}",
                job_log_dir
                    .as_ref()
                    .map_or("-".to_string(), |d| d.display().to_string())
            )
        } else {
            "no status on the EFS (it is not there, or stopped answering); the console and the local disk have it".to_string()
        },
    );

    // Who powered off, and that it was the first and only call.
    let trap = format!(
        "shutdown -h now bootforge: job {} {}",
        job.id,
        scenario.outcome.unwrap_or("-")
    );
    let trap_calls: Vec<&Call> = shutdowns.iter().filter(|c| c.line == trap).collect();
    let backstop = shutdowns
        .iter()
        .find(|c| c.line.starts_with("shutdown -P now"));
    match scenario.power_off {
        PowerOff::Trap => check(
            "the trap powered off, first and once",
            shutdowns.first().is_some_and(|c| c.line == trap) && trap_calls.len() == 1,
            format!(
                "{} call(s) of `{trap}`; {} call(s) in all",
                trap_calls.len(),
                shutdowns.len()
            ),
        ),
        PowerOff::Backstop => check(
            "the power_state backstop powered off",
            backstop.is_some() && trap_calls.is_empty(),
            shutdowns
                .first()
                .map_or("no power-off call".to_string(), |c| c.line.clone()),
        ),
        PowerOff::Outside => check(
            "powered off from outside, never by the backstop",
            ended
                .interventions
                .iter()
                .any(|(what, _)| what.contains("powered off"))
                && backstop.is_none(),
            format!(
                "{}; {} call(s) of the shutdown family inside",
                ended
                    .interventions
                    .iter()
                    .map(|(w, _)| w.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                shutdowns.len()
            ),
        ),
    }
    check(
        "powered off",
        ended.powered_off,
        format!("the container stopped by itself after {:.1}s", ended.total),
    );

    // cloud-init's own verdict: no error but the job's own runcmd failure.
    let cloud_log = read(&folders.log.join("cloud-init.log"));
    let job_failed = scenario.outcome.is_some_and(|o| o != "succeeded")
        || scenario.intervention == Intervention::KillRunner;
    let runcmd_failure = "Runparts: 1 failures (runcmd)";
    let expected = if job_failed {
        cloud_log
            .matches(&format!("RuntimeError: {runcmd_failure}"))
            .count()
    } else {
        0
    };
    let tracebacks = cloud_log
        .matches("Traceback (most recent call last)")
        .count();
    let warnings: Vec<&str> = cloud_log
        .lines()
        .filter(|l| l.contains("[WARNING]") || l.contains("[ERROR]"))
        .filter(|l| !l.contains(runcmd_failure) && !l.contains("scripts-user"))
        .collect();
    check(
        "cloud-init clean",
        tracebacks == expected && warnings.is_empty(),
        format!(
            "{tracebacks} traceback(s) ({expected} from the job's own failure); {}",
            warnings
                .first()
                .map_or("no other warning or error".to_string(), |w| w.to_string())
        ),
    );

    // Scenario promises.
    let pipeline_user = read(&folders.records.join("pipeline-user"));
    // A pipeline of the user's own (`--efs`) writes no records: only what
    // it did write is checked.
    let stand_in_ran = !folders.own_efs && scenario.phases.is_some_and(|p| p.contains(&"run"));
    if !pipeline_user.is_empty() || stand_in_ran {
        check(
            "ran as the job's user",
            pipeline_user.trim() == job.user,
            format!("the pipeline ran as {:?}", pipeline_user.trim()),
        );
    }
    let job_log = log.as_ref().map(|l| read(l)).unwrap_or_default();
    let venv = folders.state.join("venv");
    if scenario.outcome.is_some() && !folders.own_efs {
        check(
            if scenario.pip {
                "pip ran"
            } else {
                "pip never ran"
            },
            scenario.pip == (venv.exists() || job_log.contains("installing ")),
            if venv.exists() {
                format!("{} exists", venv.display())
            } else {
                "no virtual environment was made".to_string()
            },
        );
    }
    if scenario.pip && scenario.outcome.is_some() && !folders.own_efs {
        let (name, line) = if scenario.uv {
            ("the installer was uv", "with uv (at most ")
        } else {
            (
                "pip stood in for uv",
                "warning: uv cannot be had: installing with pip",
            )
        };
        check(
            name,
            job_log.contains(line),
            format!("the job's log says {line:?}"),
        );
    }
    let pipeline_end = at(&timeline, "pipeline-end");
    let trap_at = trap_calls.first().map(|c| c.at);
    if scenario.pipeline == "background-child" {
        let beat: Option<f64> = read(&folders.records.join("leftover-beat"))
            .lines()
            .rev()
            .find_map(|l| l.trim().parse().ok());
        check(
            "the leftover process ended with the job",
            beat.zip(trap_at).is_some_and(|(b, t)| b < t),
            format!(
                "its last sign of life {:?}, the power-off call {:?}",
                beat, trap_at
            ),
        );
    }
    if scenario.stale {
        let runs = job_log_dir
            .as_ref()
            .map(|d| d.join("runs/i-0earlier0000000"));
        let kept = runs.as_ref().map(|d| read(&d.join("status.json")));
        check(
            "the earlier run's files kept aside",
            kept.as_deref() == Some(STALE_STATUS)
                && runs.is_some_and(|d| read(&d.join("job.log")) == "the earlier run's log\n"),
            "runs/i-0earlier0000000/ holds its status and log; this run's status is its own"
                .to_string(),
        );
    }

    // Timings.
    timings.total = ended.total;
    timings.cloud_init_to_pipeline = at(&timeline, "cloud-init-start")
        .zip(at(&timeline, "pipeline-start"))
        .map(|(a, b)| b - a);
    timings.pipeline_end_to_shutdown = pipeline_end.zip(trap_at).map(|(e, t)| t - e);
    timings.pipeline_end_to_power_off = pipeline_end.zip(ended.stopped_at).map(|(e, s)| s - e);
    // The environment's own seconds are to the millisecond; the phase's whole.
    timings.deps_phase = status.as_ref().and_then(|s| {
        s["environment"]["seconds"]
            .as_f64()
            .or_else(|| s["phases"]["deps"].as_f64())
    });
    let kill_after = job.kill_after.seconds() as f64;
    if let (Some(limit), Some(took)) =
        (scenario.end_to_power_off, timings.pipeline_end_to_power_off)
    {
        check(
            "powered off soon after the job",
            took <= kill_after + limit,
            format!("{took:.1}s from the pipeline's end (at most kill_after + {limit:.0}s)"),
        );
    }
    if scenario.outcome == Some("timed_out") {
        timings.deadline_to_power_off = started
            .zip(ended.stopped_at)
            .map(|(s, stop)| stop - (s + job.timeout.seconds()) as f64);
        check(
            "powered off soon after the deadline",
            timings
                .deadline_to_power_off
                .is_some_and(|d| d <= kill_after + 15.0),
            format!(
                "{} after the deadline (at most kill_after + 15s)",
                timings
                    .deadline_to_power_off
                    .map_or("-".to_string(), |d| format!("{d:.1}s"))
            ),
        );
    }
    if let Some((what, at)) = ended.interventions.first() {
        let took = ended.stopped_at.map(|s| s - at);
        timings.intervention_to_power_off = took;
        let later = format!(
            "{what}; powered off {} later",
            took.map_or("-".to_string(), |t| format!("{t:.1}s"))
        );
        match scenario.intervention {
            Intervention::None => {}
            Intervention::KillRunner => check(
                "powered off soon after the runner died",
                took.is_some_and(|t| t <= 30.0),
                later,
            ),
            Intervention::PowerOff => check(
                "powered off within kill_after + 30s of the shutdown",
                took.is_some_and(|t| t <= kill_after + 30.0),
                later,
            ),
            Intervention::SpotNotice { warning } => {
                check(
                    "powered off before the spot action",
                    took.is_some_and(|t| t < warning as f64),
                    format!("{later} (the action {warning}s after the notice)"),
                );
                timings.notice_to_efs_status = ended.interrupted_on_efs_at.map(|e| e - at);
                check(
                    "interrupted on the EFS within 30s of the notice",
                    timings.notice_to_efs_status.is_some_and(|t| t <= 30.0),
                    format!(
                        "{} after the notice",
                        seconds_or_dash(timings.notice_to_efs_status)
                    ),
                );
                let notice = status.as_ref().map(|s| s["notice"]["action"].clone());
                check(
                    "the status carries the notice",
                    notice.is_some_and(|a| a == "terminate"),
                    "notice.action is the metadata service's".to_string(),
                );
            }
        }
    }
    if scenario.pipeline == "checkpoint" {
        let term = at(&timeline, "pipeline-term");
        let first = term.is_some_and(|t| {
            trap_at.is_none_or(|s| t < s) && ended.stopped_at.is_none_or(|s| t < s)
        });
        check(
            "SIGTERM reached the pipeline first",
            first,
            format!(
                "the pipeline's SIGTERM at {term:?}, the finalizer's shutdown at {trap_at:?}, the power-off at {:?}",
                ended.stopped_at
            ),
        );
        let saved = job_log_dir
            .as_ref()
            .and_then(|d| fs::read_dir(d.join("checkpoint")).ok())
            .is_some_and(|mut entries| entries.next().is_some());
        check(
            "a checkpoint on the EFS",
            saved,
            "the pipeline's CHECKPOINT_DIR holds what it wrote at SIGTERM".to_string(),
        );
    }
    status.or(printed)
}
