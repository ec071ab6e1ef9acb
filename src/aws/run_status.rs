//! A run's `status.json`, the document the runner writes on the EFS: its
//! shape, as the runner writes it (strict) and as readers take it (an
//! earlier, a later or a shorter one), and what a run came to once it has
//! ended, as the index and the listings keep it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::aws::claim::EndedAttempt;
use crate::check::catalog;

/// The exit code of `launch --wait` for an outcome: 0 succeeded, 1 the job
/// ended otherwise (`terminated` on purpose among them), 3 no status was ever written, 4 the instance was
/// interrupted (spot), 5 it failed to launch.
pub fn exit_code(outcome: &str) -> i32 {
    match outcome {
        "succeeded" => 0,
        "no_status" => NO_STATUS,
        "interrupted" => 4,
        "launch_failed" => 5,
        _ => 1,
    }
}

/// The exit code of `launch --wait` when the job wrote no status at all.
pub const NO_STATUS: i32 = 3;

/// How a run ended, as the index keeps it for listings and totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct End {
    /// The job's outcome as `launch --wait` reports it (`terminated` for a
    /// job ended on purpose), and that command's exit code.
    pub outcome: String,
    pub exit_code: i32,
    /// The pipeline's exit code, as its status gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_exit_code: Option<i64>,
    /// Seconds since the epoch: when the last attempt ended.
    pub ended_at: u64,
    /// Why it ended so, for people (the status's message, or the reason
    /// no further attempt followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every attempt of the run, with its market, price and cost.
    pub attempts: Vec<EndedAttempt>,
    /// The attempts' costs summed; absent when one has no price.
    pub cost_usd: Option<f64>,
}

impl End {
    /// Seconds the run's instances ran, summed over its attempts.
    pub fn instance_seconds(&self) -> u64 {
        self.attempts
            .iter()
            .map(|a| a.ended_at.saturating_sub(a.launched_at))
            .sum()
    }

    /// What the same hours would have cost on demand (the catalog's price of
    /// each attempt's type), when every attempt's type is priced.
    pub fn on_demand_usd(&self) -> Option<f64> {
        self.attempts
            .iter()
            .map(|a| {
                catalog::lookup(&a.instance_type).map(|t| {
                    catalog::job_cost(t.price_per_hour, a.ended_at.saturating_sub(a.launched_at))
                })
            })
            .sum()
    }
}

/// The index's summary of a run's report (`launch --wait --json`'s
/// document, as a claim keeps it).
pub fn end_of_report(report: &Json) -> Option<End> {
    let wait = &report["wait"];
    let outcome = wait["outcome"].as_str()?.to_string();
    let attempts: Vec<EndedAttempt> =
        serde_json::from_value(report["attempts"].clone()).unwrap_or_default();
    let message = wait["status"]["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .or_else(|| report["retry"].as_str())
        .or_else(|| wait["state_reason"]["message"].as_str())
        .map(str::to_string);
    Some(End {
        exit_code: wait["exit_code"]
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())?,
        status_exit_code: wait["status"]["exit_code"].as_i64(),
        ended_at: attempts.last().map_or(0, |a| a.ended_at),
        outcome,
        message,
        cost_usd: report["cost_usd"].as_f64(),
        attempts,
    })
}

/// A run's `status.json`, as the runner writes it on the instance
/// (`snippets/shutdown-trap/status.py`): the shape `launch --wait` and
/// `status` pass on as they read it. The runner's tests hold what it writes
/// to this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunStatus {
    /// Which shape this is (2 since it was given); readers accept earlier
    /// and shorter documents, and ignore fields they do not know.
    pub schema_version: u32,
    pub job_id: String,
    pub profile: String,
    /// The run's number, when the launcher's claim gave it.
    pub run: Option<u32>,
    pub instance_id: String,
    pub boot_id: String,
    pub instance_type: String,
    /// `succeeded`, `failed`, `timed_out`, `mount_failed`, `deps_failed`,
    /// `gpu_missing` or `interrupted`.
    pub outcome: String,
    pub exit_code: i64,
    /// Why it ended so, for people; empty when it succeeded.
    pub message: String,
    /// Each phase that ran (`mount`, `deps`, `gpu`, `run`) and its seconds.
    pub phases: std::collections::BTreeMap<String, u64>,
    pub gpu: Option<Gpu>,
    /// The spot interruption notice, when one came.
    pub notice: Option<Notice>,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC; absent (null) while the status is interim.
    pub ended_at: Option<String>,
    /// False for the interim status a spot notice writes at once.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The run's log on the EFS.
    pub log: String,
    /// The attempt of the run this instance is, from the launcher's claim.
    pub attempt: Option<u32>,
    /// `spot` or `on-demand`, and its price an hour, from the claim.
    pub market: Option<String>,
    pub price_per_hour: Option<f64>,
    /// The requirements' environment, when there were requirements.
    #[serde(default)]
    pub environment: Option<Environment>,
}

/// The JSON Schema of `status.json` exactly as this bootforge's runner
/// writes it: every field, and nothing else. The runner's own tests hold
/// what it writes to this.
pub fn strict_run_status_schema() -> Json {
    serde_json::to_value(schemars::schema_for!(RunStatus)).expect("a schema serializes to JSON")
}

/// `schema` (of `status.json`, or of a document that carries one) as
/// readers accept it, which is what bootforge publishes: a `status.json`
/// from an earlier or later runner, or a shorter one, needs only its
/// `instance_id` (whose run it is); fields it does not know are ignored.
pub fn readers_schema(mut schema: Json) -> Json {
    fn relax(def: &mut Json, required: Option<&[&str]>) {
        if let Some(o) = def.as_object_mut() {
            o.remove("additionalProperties");
            if let Some(r) = required {
                o.insert("required".to_string(), serde_json::json!(r));
            }
        }
    }
    const RUN_STATUS_REQUIRES: &[&str] = &["instance_id"];
    if schema["title"] == "RunStatus" {
        relax(&mut schema, Some(RUN_STATUS_REQUIRES));
    }
    if let Some(defs) = schema.get_mut("$defs").and_then(Json::as_object_mut) {
        for (name, def) in defs.iter_mut() {
            match name.as_str() {
                "RunStatus" => relax(def, Some(RUN_STATUS_REQUIRES)),
                "Gpu" | "Notice" | "Environment" => relax(def, None),
                _ => {}
            }
        }
    }
    schema
}

/// How the requirements' environment was had, and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// `installed`, `restored` (from the EFS cache), `rebuilt` (over a
    /// damaged cache entry) or `failed` (the installer failed; the job went on).
    pub how: String,
    /// Its files and bytes, when they were counted.
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    /// The seconds it took, to the millisecond (the `deps` phase; `phases`
    /// has it in whole seconds). Absent from statuses written before it was.
    #[serde(default)]
    pub seconds: Option<f64>,
}

/// The GPU `nvidia-smi` named (empty before the `gpu` phase ran).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub name: String,
    pub driver: String,
}

/// A spot interruption notice, as the instance read it from IMDS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    /// IMDS's `action`: `terminate`, `stop` or `hibernate`.
    pub action: String,
    /// IMDS's `time`, RFC 3339, as it gave it.
    pub time: Option<String>,
    /// The action's time, seconds since the epoch (two minutes after the
    /// notice when IMDS's time could not be read).
    pub action_epoch: u64,
    /// When the instance read the notice, RFC 3339.
    pub noticed_at: String,
}
