//! The profile format's types, as a profile file and `--set` give them:
//! the instance, the job and its budget, the snippets chosen, the output.
//! A leaf: every module that reads a profile imports it, and it imports
//! none of them.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::compile::duration::Duration;

/// The name of the profile `compile` uses when none is given.
pub const DEFAULT_PROFILE: &str = "traffic-sign-gpu";

/// One deployable payload and the instance that runs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// One line saying what the profile is for.
    pub summary: String,
    /// The profile this one starts from (deep merge, this one wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    pub instance: Instance,
    pub job: Job,
    /// Snippets in order, each with its parameters (`{}` or empty for the
    /// defaults, `false` to drop one that a parent profile uses).
    pub snippets: IndexMap<String, Value>,
    pub output: Output,
}

/// The EC2 instance that runs the job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Instance {
    pub region: String,
    pub ami: String,
    /// Instance types to try, in order, when capacity runs out.
    pub types: Vec<String>,
    /// Subnets to try, in order.
    pub subnets: Vec<String>,
    /// The zone of the subnets, when stated (checked against the region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub security_groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pair: Option<String>,
    /// Name of the IAM instance profile given to the instance, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// The IAM role inside that instance profile (its name, or its ARN):
    /// `iam:PassRole` is on the role, whose name often differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_role: Option<String>,
    pub root_device: String,
    /// Root volume size; absent keeps the AMI's own size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_volume_gb: Option<u32>,
    /// Where the instance is bought: on demand, on the spot market, or spot
    /// first with on demand when spot has no capacity (or no quota).
    pub market: Market,
    /// The most a spot instance may cost an hour (RunInstances' MaxPrice);
    /// absent, the on-demand price caps it. The cost guard prices a
    /// spot-only attempt at this cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_spot_price_usd: Option<f64>,
    /// Whether the instance may read its own tags from the metadata service.
    pub metadata_tags: bool,
    /// Refuse to launch when the worst-case cost exceeds this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// The AWS account, for the ARNs of `iam-policy` (any account when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The GPU model the profile expects the instance type to carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    pub tags: IndexMap<String, String>,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            region: String::new(),
            ami: String::new(),
            types: Vec::new(),
            subnets: Vec::new(),
            availability_zone: None,
            security_groups: Vec::new(),
            key_pair: None,
            instance_profile: None,
            instance_role: None,
            root_device: "/dev/xvda".to_string(),
            root_volume_gb: None,
            market: Market::OnDemand,
            max_spot_price_usd: None,
            metadata_tags: false,
            max_cost_usd: None,
            account: None,
            gpu: None,
            tags: IndexMap::new(),
        }
    }
}

/// Keys the format replaced: (section, key, what to say, what to do). A
/// profile that still has one is refused with these words, never read as
/// a typo or as something it may not mean.
pub const REPLACED: &[(&str, &str, &str, &str)] = &[(
    "instance",
    "spot",
    "was replaced by `instance.market`",
    "write `market: spot-then-on-demand` for what `spot: true` did (spot first, on demand when spot has no capacity), `market: spot` for spot only, or remove the key for on demand",
)];

/// The first replaced key `value` (a profile's mapping, or a merge of
/// them) holds: its dotted path, the message and the help.
pub fn replaced_key(value: &Value) -> Option<(String, &'static str, &'static str)> {
    REPLACED.iter().find_map(|(section, key, message, help)| {
        value
            .get(section)
            .and_then(Value::as_mapping)
            .filter(|m| m.contains_key(key))
            .map(|_| (format!("{section}.{key}"), *message, *help))
    })
}

/// Where the instance is bought.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    #[default]
    OnDemand,
    Spot,
    SpotThenOnDemand,
}

impl Market {
    /// The markets the attempts go through, in order: `true` for spot.
    pub fn attempts(self) -> &'static [bool] {
        match self {
            Market::OnDemand => &[false],
            Market::Spot => &[true],
            Market::SpotThenOnDemand => &[true, false],
        }
    }

    /// The market of one request: spot, or on demand.
    pub fn of_request(spot: bool) -> Market {
        if spot { Market::Spot } else { Market::OnDemand }
    }

    /// Whether any attempt is on the spot market.
    pub fn uses_spot(self) -> bool {
        self != Market::OnDemand
    }

    pub fn name(self) -> &'static str {
        match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
            Market::SpotThenOnDemand => "spot-then-on-demand",
        }
    }
}

/// The job the instance runs, and its time budget.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Job {
    /// The job's id; `launch --set job_id=…` sets it per run.
    pub id: String,
    /// The job's whole budget, counted from boot; the pipeline is stopped
    /// when it runs out.
    pub timeout: Duration,
    /// Time after the timeout for the finalizer; the dead-man's switch powers
    /// off at boot + timeout + grace.
    pub grace: Duration,
    /// Between the pipeline's SIGTERM and its SIGKILL.
    pub kill_after: Duration,
    /// The user the pipeline runs as.
    pub user: String,
    /// Where each job's directory (`LOG_DIR/JOB_ID`) with its log and status goes.
    pub log_dir: String,
    /// Local state on the instance: the fallback status, the boot stamp.
    pub state_dir: String,
    /// Where the launching host sees `log_dir` (its own mount of the same
    /// file system); the same path when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_log_dir: Option<String>,
    /// Another attempt of the same run when an attempt ends in one of the
    /// outcomes named; absent, every outcome ends the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// The most jobs of this profile that run at once (each holds a GPU
    /// instance); a launch beyond it is queued until one ends. Absent: no
    /// limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
}

/// A job's retry policy: which outcomes start another attempt of the same
/// run (same job id, directory and checkpoint folder), how many attempts
/// there are in all, and when the market turns on demand.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// The outcomes that start another attempt; every other one ends the job.
    pub on: Vec<RetryOn>,
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// Interruptions after which the next attempts are bought on demand
    /// (for a spot market); absent, the market stays the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand_after: Option<u32>,
}

/// The most attempts a retry policy may have.
pub const MAX_ATTEMPTS: u32 = 10;

impl Retry {
    /// Whether an attempt that ended in `outcome` starts another one.
    pub fn retries(&self, outcome: &str) -> bool {
        self.on.iter().any(|o| o.name() == outcome)
    }

    /// The market an attempt is bought on after `interruptions` earlier
    /// attempts were interrupted.
    pub fn market(&self, market: Market, interruptions: u32) -> Market {
        match self.on_demand_after {
            Some(after) if market.uses_spot() && interruptions >= after => Market::OnDemand,
            _ => market,
        }
    }
}

/// An outcome a retry policy may name: what the infrastructure did to an
/// attempt, never what the pipeline did (a pipeline that failed would fail
/// again, at the GPU's price).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// A spot interruption, or a shutdown from outside nobody asked for.
    Interrupted,
    /// EC2 ended the instance before the job could start (its StateReason).
    LaunchFailed,
    /// The instance ended without writing any status.
    NoStatus,
    /// The EFS never mounted.
    MountFailed,
    /// The GPU never answered.
    GpuMissing,
}

impl RetryOn {
    pub const ALL: [RetryOn; 5] = [
        RetryOn::Interrupted,
        RetryOn::LaunchFailed,
        RetryOn::NoStatus,
        RetryOn::MountFailed,
        RetryOn::GpuMissing,
    ];

    /// The outcome's name, as `status.json` and `launch --wait` give it.
    pub fn name(self) -> &'static str {
        match self {
            RetryOn::Interrupted => "interrupted",
            RetryOn::LaunchFailed => "launch_failed",
            RetryOn::NoStatus => "no_status",
            RetryOn::MountFailed => "mount_failed",
            RetryOn::GpuMissing => "gpu_missing",
        }
    }
}

impl Default for Job {
    fn default() -> Self {
        Job {
            id: "manual".to_string(),
            timeout: Duration::from_seconds(0),
            grace: Duration::from_minutes(10),
            kill_after: Duration::from_seconds(60),
            user: "ec2-user".to_string(),
            log_dir: String::new(),
            state_dir: "/var/lib/bootforge".to_string(),
            host_log_dir: None,
            retry: None,
            max_running: None,
        }
    }
}

/// How the payload is packed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Output {
    pub compression: Compression,
}

/// Whether the payload is gzipped.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Only when the raw payload passes the size budget (85 % of the
    /// user-data limit): what EC2 receives then stays within it.
    #[default]
    Auto,
    Gzip,
    None,
}
