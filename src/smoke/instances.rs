//! Local instances: containers of the smoke image that play a job's EC2
//! instance, booted under systemd and cloud-init from the payload's own
//! bytes. Created, listed, inspected and terminated here; the launch flow
//! on top of them (`launch --local`) is in `local`.
//!
//! A local instance is a container labelled [`LABEL`], with bootforge's tags
//! as labels; its id is `local-` and the container's short id. It is
//! started with `--rm`: powering off removes it, as terminating ends an
//! instance. `ps --local` and `terminate --local` see only those.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::boot::EfsMount;
use super::environment;
use super::image::{docker, image};
use crate::aws::claim::{Claim, Claims};
use crate::aws::ec2::Instance;
use crate::aws::job::local_claims;
use crate::aws::plan::{
    TAG_ATTEMPT, TAG_DEADLINE, TAG_JOB, TAG_PAYLOAD, TAG_PROFILE, TAG_RUN, plan,
};
use crate::aws::reap::Termination;
use crate::clock::{now, parse_rfc3339};
use crate::compile::Compiled;
use crate::diagnostics::{Error, Result};

/// The label of every local instance.
pub const LABEL: &str = "org.bootforge.local";
/// The label holding the instance's host folders (seed, logs, records).
const DIR_LABEL: &str = "org.bootforge.local.dir";
/// The label holding the directory of the job's claim (the host's
/// `host_log_dir`), for `terminate` to record an end on purpose there.
const CLAIM_LABEL: &str = "org.bootforge.local.claims";
/// The file in an instance's host folder that holds its StateReason code,
/// as EC2 would give it: why it ended.
pub(super) const REASON_FILE: &str = "state-reason";
/// The label holding the instance type it stands in for.
const TYPE_LABEL: &str = "org.bootforge.local.type";
/// How long a local instance may take to power off when terminated before
/// it is killed.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// The host folders of a run's local instance: its seed, its /var/log
/// (the console's `cloud-init-output.log` among them), its records.
pub(super) fn folder(claim: &Claim) -> PathBuf {
    local_claims().with_file_name("local").join(format!(
        "{}-run{}-{}",
        claim.job, claim.run, claim.launched_at
    ))
}

/// The local instances, every one or those whose labels match `filters`
/// (`key=value`).
pub fn instances(filters: &[String]) -> Result<Vec<Instance>> {
    let mut args = vec!["ps", "-aq", "--no-trunc", "--filter"];
    let label = format!("label={LABEL}");
    args.push(&label);
    let filters: Vec<String> = filters.iter().map(|f| format!("label={f}")).collect();
    for f in &filters {
        args.extend(["--filter", f.as_str()]);
    }
    let out = docker(&args)?;
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect"];
    args.extend(ids.iter().map(String::as_str));
    let out = docker(&args)?;
    // A container removed between the two calls is simply not listed.
    let found: Vec<Json> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(found.iter().map(instance).collect())
}

/// A container as the instance it plays.
fn instance(c: &Json) -> Instance {
    let label = |k: &str| c["Config"]["Labels"][k].as_str().map(str::to_string);
    let id = c["Id"].as_str().unwrap_or_default();
    let state = match c["State"]["Status"].as_str().unwrap_or_default() {
        "created" => "pending",
        "running" | "paused" | "restarting" => "running",
        "removing" => "shutting-down",
        _ => "terminated",
    };
    Instance {
        id: format!("local-{}", &id[..id.len().min(12)]),
        state: state.to_string(),
        instance_type: label(TYPE_LABEL).unwrap_or_default(),
        subnet: None,
        private_ip: None,
        launched: c["Created"].as_str().and_then(parse_rfc3339),
        profile: label(TAG_PROFILE),
        job: label(TAG_JOB),
        run: label(TAG_RUN),
        attempt: label(TAG_ATTEMPT),
        deadline: label(TAG_DEADLINE),
        state_reason: None,
    }
}

/// The local instance `id` (`local-…`), while its container exists.
pub fn get(id: &str) -> Result<Option<Instance>> {
    let Some(short) = id.strip_prefix("local-") else {
        return Ok(None);
    };
    Ok(instances(&[])?
        .into_iter()
        .find(|i| i.id == format!("local-{short}")))
}

/// Starts run `claim` of `compiled`'s job: creates the container with the
/// job's labels and the EFS folder, writes its seed (the payload as
/// user-data, its instance id as meta-data), and starts it.
pub(super) fn start(
    compiled: &Compiled,
    claim: &Claim,
    claims: &Path,
    efs: &Path,
    mounts: &[EfsMount],
) -> Result<Instance> {
    let plan = plan(compiled, claim)?;
    let profile = &compiled.profile.profile;
    let folder = folder(claim);
    let (cloud, log, records, state) = (
        folder.join("cloud"),
        folder.join("log"),
        folder.join("records"),
        folder.join("state"),
    );
    for dir in [
        &cloud.join("seed/nocloud"),
        &log.join("journal"),
        &records,
        &state,
    ] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    }
    let instance_type = plan
        .requests
        .first()
        .map_or(String::new(), |a| a.instance_type.clone());
    let labels = [
        (LABEL, "1".to_string()),
        (DIR_LABEL, folder.display().to_string()),
        (TYPE_LABEL, instance_type.clone()),
        (CLAIM_LABEL, claims.display().to_string()),
        (TAG_PROFILE, plan.profile.clone()),
        (TAG_JOB, plan.job.clone()),
        (TAG_RUN, plan.run.to_string()),
        (TAG_ATTEMPT, plan.attempt.to_string()),
        (TAG_DEADLINE, plan.deadline.clone()),
        (TAG_PAYLOAD, compiled.payload.sha256()),
    ];
    let mut args: Vec<String> = [
        "create",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "--cap-add",
        "NET_ADMIN",
        "--device",
        "/dev/fuse",
    ]
    .map(str::to_string)
    .to_vec();
    for (k, v) in &labels {
        args.extend(["--label".to_string(), format!("{k}={v}")]);
    }
    let bind = |host: &Path, at: &str| ["-v".to_string(), format!("{}:{at}", host.display())];
    args.extend(
        [
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-e",
            "container=docker",
        ]
        .map(str::to_string),
    );
    args.extend([
        "-v".to_string(),
        "/sys/fs/cgroup:/sys/fs/cgroup:ro".to_string(),
    ]);
    args.extend(bind(&records, "/smoke/records"));
    args.extend(bind(&log, "/var/log"));
    args.extend(bind(&cloud, "/var/lib/cloud"));
    args.extend(bind(&state, &profile.job.state_dir));
    let mut served: Vec<&str> = Vec::new();
    for (fs_id, _, _) in mounts {
        args.extend([
            "--add-host".to_string(),
            format!(
                "{fs_id}.efs.{}.amazonaws.com:127.0.0.1",
                profile.instance.region
            ),
        ]);
        if !served.contains(&fs_id.as_str()) {
            args.extend(bind(efs, &format!("/smoke/efs/{fs_id}")));
            served.push(fs_id);
        }
    }
    args.extend([image(), "/lib/systemd/systemd".to_string()]);
    let out = docker(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    if !out.status.success() {
        return Err(environment(
            format!(
                "cannot create the local instance: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "the Docker engine must allow containers with CAP_SYS_ADMIN, CAP_NET_ADMIN and /dev/fuse",
        ));
    }
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let id = format!("local-{}", &container[..container.len().min(12)]);
    let seed = cloud.join("seed/nocloud");
    let meta = format!("instance-id: {id}\nlocal-hostname: {id}\ninstance-type: {instance_type}\n");
    let written = std::fs::write(seed.join("meta-data"), meta)
        .and_then(|()| std::fs::write(seed.join("user-data"), &compiled.payload.bytes));
    if let Err(e) = written {
        let _ = docker(&["rm", "-f", &container]);
        return Err(Error::io(seed, "write the seed into", e));
    }
    let out = docker(&["start", &container])?;
    if !out.status.success() {
        let _ = docker(&["rm", "-f", &container]);
        return Err(environment(
            format!(
                "cannot start the local instance: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "the Docker engine must allow containers with CAP_SYS_ADMIN, CAP_NET_ADMIN and /dev/fuse",
        ));
    }
    Ok(get(&id)?.unwrap_or(Instance {
        id,
        state: "pending".to_string(),
        instance_type,
        subnet: None,
        private_ip: None,
        launched: Some(now()),
        profile: Some(plan.profile),
        job: Some(plan.job),
        run: Some(plan.run.to_string()),
        attempt: Some(plan.attempt.to_string()),
        deadline: Some(plan.deadline),
        state_reason: None,
    }))
}

/// A label of local instance `id`.
fn label_of(id: &str, label: &str) -> Option<String> {
    let container = id.strip_prefix("local-")?;
    let format = format!("{{{{ index .Config.Labels \"{label}\" }}}}");
    let out = docker(&["inspect", "--format", &format, container]).ok()?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !value.is_empty() && value != "<no value>").then_some(value)
}

/// The host folder of local instance `id` (its seed, logs and records),
/// from its label.
fn folder_of(id: &str) -> Option<PathBuf> {
    label_of(id, DIR_LABEL).map(PathBuf::from)
}

/// Records why local instance `i` ends, as EC2's StateReason would say,
/// unless a reason is there already (the first cause wins).
fn give_reason(i: &Instance, code: &str) {
    if let Some(file) = folder_of(&i.id).map(|d| d.join(REASON_FILE))
        && !file.exists()
    {
        let _ = std::fs::write(file, format!("{code}\n"));
    }
}

/// `terminate --local`: local instances ended on purpose. Each one's job
/// claim records it (no retry policy starts another attempt), its
/// StateReason is `Client.UserInitiatedShutdown` as on EC2, and then it is
/// terminated.
pub fn end_on_purpose(instances: &[Instance]) -> Vec<Termination> {
    for i in instances {
        give_reason(i, crate::aws::retry::USER_TERMINATED);
        if let (Some(dir), Some(job)) = (label_of(&i.id, CLAIM_LABEL), i.job.as_deref())
            && let Ok(claims) = Claims::open(Path::new(&dir), &local_claims(), job)
        {
            let _ = claims.end_on_purpose(&i.id, now());
        }
    }
    terminate(instances)
}

/// Rehearses a spot interruption of local instances, as EC2 reclaims a
/// spot instance: the notice on each one's metadata stand-in
/// (`spot/instance-action`, the action `warning` from now; EC2 gives about
/// two minutes), then, at the action time, the instances that are still up
/// are terminated.
pub fn spot_interrupt(instances: &[Instance], warning: Duration) -> Result<Vec<Termination>> {
    let action = now() + warning.as_secs();
    let notice = format!(
        "{{\"action\": \"terminate\", \"time\": \"{}\"}}\n",
        crate::clock::rfc3339(action)
    );
    for i in instances {
        give_reason(i, "Server.SpotInstanceTermination");
        let records = folder_of(&i.id)
            .map(|d| d.join("records"))
            .ok_or_else(|| Error::Usage {
                message: format!("{}: no host folder to serve its metadata from", i.id),
            })?;
        let file = records.join("spot-notice");
        let temporary = records.join(".spot-notice.tmp");
        std::fs::write(&temporary, &notice)
            .and_then(|()| std::fs::rename(&temporary, &file))
            .map_err(|e| Error::io(&file, "write", e))?;
    }
    wait_until_gone(instances, warning);
    Ok(terminate(instances))
}

/// Waits, at most `bound`, until none of `instances` is left running.
fn wait_until_gone(instances: &[Instance], bound: Duration) {
    let start = Instant::now();
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    while start.elapsed() < bound {
        let alive = self::instances(&[]).unwrap_or_default();
        if !alive
            .iter()
            .any(|i| ids.contains(&i.id.as_str()) && i.state != "terminated")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Ends local instances as EC2 ends an instance: asked to power off
/// (systemd's SIGRTMIN+4), killed when it has not after [`STOP_BOUND`].
pub fn terminate(instances: &[Instance]) -> Vec<Termination> {
    let container = |i: &Instance| i.id.trim_start_matches("local-").to_string();
    for i in instances {
        let _ = docker(&["kill", "--signal", "SIGRTMIN+4", &container(i)]);
    }
    wait_until_gone(instances, STOP_BOUND);
    instances
        .iter()
        .map(|i| {
            let out = docker(&["rm", "-f", &container(i)]);
            // Docker may be removing it already (`--rm`), when `rm -f` says
            // so and fails: ended all the same, as EC2's `shutting-down`.
            let gone = get(&i.id).is_ok_and(|found| {
                found.is_none_or(|i| matches!(i.state.as_str(), "shutting-down" | "terminated"))
            });
            Termination {
                instance_id: i.id.clone(),
                profile: i.profile.clone(),
                terminated: gone,
                error: (!gone).then(|| match out {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                }),
            }
        })
        .collect()
}

/// What `terminate --local` may end: the local instances `ids`, and those
/// of `job`; anything else is refused.
pub fn targets(ids: &[String], job: Option<&str>) -> Result<Vec<Instance>> {
    if ids.is_empty() && job.is_none() {
        return Err(Error::Usage {
            message:
                "say which instances: `terminate --local INSTANCE…` or `terminate --local --job ID`"
                    .to_string(),
        });
    }
    let all = instances(&[])?;
    let mut chosen: Vec<Instance> = all
        .iter()
        .filter(|i| job.is_some_and(|j| i.job.as_deref() == Some(j)))
        .cloned()
        .collect();
    for id in ids {
        match all.iter().find(|i| &i.id == id) {
            Some(i) => chosen.push(i.clone()),
            None => {
                return Err(Error::Usage {
                    message: format!(
                        "no local instance {id} (local instances are `local-…`; see `bootforge ps --local`)"
                    ),
                });
            }
        }
    }
    chosen.retain(|i| i.state != "terminated");
    chosen.dedup_by(|a, b| a.id == b.id);
    Ok(chosen)
}

/// A local instance whose container is gone, as its claim remembers it.
pub(super) fn gone(id: &str, claim: &Claim) -> Instance {
    Instance::of_claim(id, claim, "terminated")
}
