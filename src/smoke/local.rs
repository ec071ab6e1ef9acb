//! `launch --local`: a job rehearsed on this machine. Everything `launch`
//! does (the compile, the cost guard, the job's claim, the wait and its
//! report) with the instance played by a container of the smoke image,
//! booted from the same payload bytes under systemd and cloud-init. The EFS
//! is a host folder; the GPU is the stand-in.
//!
//! A local instance is a container labelled [`LABEL`], with bootforge's tags
//! as labels; its id is `local-` and the container's short id. It is
//! started with `--rm`: powering off removes it, as terminating ends an
//! instance. `ps --local` and `terminate --local` see only those.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::boot::{EfsMount, mounts};
use super::environment;
use super::image::{docker, image, image_exists};
use crate::aws::claim::{Claim, Claims};
use crate::aws::ec2::Instance;
use crate::aws::job::{Report, local_claims, report};
use crate::aws::operate::{Decision, Launched, claim_step, settle, still_starting};
use crate::aws::plan::{TAG_DEADLINE, TAG_JOB, TAG_PAYLOAD, TAG_PROFILE, TAG_RUN, plan};
use crate::aws::reap::Termination;
use crate::aws::wait::{Finished, Follow, Intervals, console_status, exit_code, read_status};
use crate::clock::{now, parse_rfc3339};
use crate::compile::Compiled;
use crate::compile::paths::holder;
use crate::diagnostics::{Error, Result};
use crate::progress::Event;

/// The label of every local instance.
pub const LABEL: &str = "org.bootforge.local";
/// The label holding the instance's host folders (seed, logs, records).
const DIR_LABEL: &str = "org.bootforge.local.dir";
/// The label holding the instance type it stands in for.
const TYPE_LABEL: &str = "org.bootforge.local.type";
/// How long a local instance may take to power off when terminated before
/// it is killed.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// What `launch --local` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The EFS's host folder; by default the file system that holds the
    /// job's `host_log_dir`.
    pub efs: Option<PathBuf>,
    pub wait: bool,
    pub follow: bool,
    pub rerun: bool,
    pub intervals: Intervals,
}

/// The mount point of the file system that holds `path` on this host.
fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = path.to_str()?;
    // The fifth field of each line is the mount point (octal escapes for
    // spaces and the like).
    let points = table.lines().filter_map(|l| l.split(' ').nth(4));
    holder(path, points).map(PathBuf::from)
}

/// The host folder that plays the EFS: `given`, or the file system that
/// holds the job's host log directory when it is not the root one.
pub fn efs_root(compiled: &Compiled, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = given {
        return match dir.canonicalize() {
            Ok(dir) if dir.is_dir() => Ok(dir),
            _ => Err(Error::Usage {
                message: format!("--efs {}: no such folder", dir.display()),
            }),
        };
    }
    let job = &compiled.profile.profile.job;
    let host = Path::new(job.host_log_dir.as_deref().unwrap_or(&job.log_dir));
    let point = host
        .canonicalize()
        .ok()
        .and_then(|p| mount_point_of(&p))
        .filter(|p| p != Path::new("/"));
    point.ok_or_else(|| Error::Usage {
        message: format!(
            "{} is not on a file system of its own here, so there is no EFS to rehearse with",
            host.display()
        ),
    })
}

/// Where the job's log directory (`log_dir`, on the instance) is in the
/// EFS folder `efs`.
fn host_log_dir(compiled: &Compiled, mounts: &[EfsMount], efs: &Path) -> Result<PathBuf> {
    let log_dir = &compiled.profile.profile.job.log_dir;
    let at = holder(log_dir, mounts.iter().map(|(_, _, m)| m.as_str())).ok_or_else(|| {
        Error::Usage {
            message: format!(
                "the job's log_dir {log_dir} is on no EFS mount of the profile: a local rehearsal could not see its status"
            ),
        }
    })?;
    let (_, sub, _) = mounts
        .iter()
        .find(|(_, _, m)| m == at)
        .expect("holder returns one of the mount points");
    let rest = log_dir[at.trim_end_matches('/').len()..].trim_start_matches('/');
    let host_dir = efs.join(sub.trim_start_matches('/')).join(rest);
    enterable(efs, mounts, &host_dir)?;
    Ok(host_dir)
}

/// The job's user in the smoke image (`useradd --uid 1000`, as ec2-user on
/// Amazon Linux): a user of its own, never the one who launches.
const JOB_UID: u32 = 1000;

/// Whether a folder of `mode`, `uid` and `gid` lets the job's user through.
fn lets_through(mode: u32, uid: u32, gid: u32) -> bool {
    let bit = if uid == JOB_UID {
        0o100
    } else if gid == JOB_UID {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

/// The existing folders the job's user goes through on the EFS folder (the
/// root of each mount, the way down to the job's log directory) must let
/// it through: a folder made by `mktemp -d` (0700, yours) would fail the
/// pipeline on the instance with "Permission denied", as on an EFS whose
/// root is 0700.
fn enterable(efs: &Path, mounts: &[EfsMount], host_dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let roots = mounts
        .iter()
        .map(|(_, sub, _)| efs.join(sub.trim_start_matches('/')))
        .map(|dir| dir.components().collect::<PathBuf>());
    let way = host_dir.ancestors().filter(|d| d.starts_with(efs));
    for dir in roots.chain(way.map(Path::to_path_buf)) {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if meta.is_dir() && !lets_through(meta.mode(), meta.uid(), meta.gid()) {
            return Err(Error::Usage {
                message: format!(
                    "{}: the job's user (uid {JOB_UID} in the container) cannot enter this folder (mode {:o}, owner uid {}); let it through (`chmod o+x {}`) or give --efs another folder",
                    dir.display(),
                    meta.mode() & 0o7777,
                    meta.uid(),
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// The host folders of a run's local instance: its seed, its /var/log
/// (the console's `cloud-init-output.log` among them), its records.
fn folder(claim: &Claim) -> PathBuf {
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
        deadline: label(TAG_DEADLINE),
        state_reason: None,
    }
}

/// The local instance `id` (`local-…`), while its container exists.
fn get(id: &str) -> Result<Option<Instance>> {
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
fn start(compiled: &Compiled, claim: &Claim, efs: &Path, mounts: &[EfsMount]) -> Result<Instance> {
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
        .attempts
        .first()
        .map_or(String::new(), |a| a.instance_type.clone());
    let labels = [
        (LABEL, "1".to_string()),
        (DIR_LABEL, folder.display().to_string()),
        (TYPE_LABEL, instance_type.clone()),
        (TAG_PROFILE, plan.profile.clone()),
        (TAG_JOB, plan.job.clone()),
        (TAG_RUN, plan.run.to_string()),
        (TAG_DEADLINE, plan.deadline.clone()),
        (TAG_PAYLOAD, compiled.payload.sha256()),
    ];
    let mut args: Vec<String> = [
        "create",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
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
            "the Docker engine must allow containers with CAP_SYS_ADMIN and /dev/fuse",
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
            "the Docker engine must allow containers with CAP_SYS_ADMIN and /dev/fuse",
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
        deadline: Some(plan.deadline),
        state_reason: None,
    }))
}

/// Ends local instances as EC2 ends an instance: asked to power off
/// (systemd's SIGRTMIN+4), killed when it has not after [`STOP_BOUND`].
pub fn terminate(instances: &[Instance]) -> Vec<Termination> {
    let container = |i: &Instance| i.id.trim_start_matches("local-").to_string();
    for i in instances {
        let _ = docker(&["kill", "--signal", "SIGRTMIN+4", &container(i)]);
    }
    let start = Instant::now();
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
    while start.elapsed() < STOP_BOUND {
        let alive = self::instances(&[]).unwrap_or_default();
        if !alive
            .iter()
            .any(|i| ids.contains(&i.id) && i.state != "terminated")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    instances
        .iter()
        .map(|i| {
            let out = docker(&["rm", "-f", &container(i)]);
            let gone = get(&i.id).is_ok_and(|found| found.is_none());
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

/// Follows local instance `instance` until its container is gone, then
/// reports the run's outcome from its status on the EFS folder. Past the
/// instance's deadline it is terminated.
fn wait(
    instance: &Instance,
    claim: &Claim,
    job_dir: &Path,
    intervals: Intervals,
    follow: bool,
    on: &mut dyn FnMut(Event),
) -> Result<Finished> {
    let id = instance.id.clone();
    let deadline = instance.deadline.as_deref().and_then(parse_rfc3339);
    let mut follow = follow.then(|| Follow::new(job_dir));
    let mut terminated_by_bootforge = false;
    let mut last = instance.state.clone();
    on(Event::Phase(format!("{id} {last}")));
    loop {
        if let Some(f) = follow.as_mut() {
            f.poll(on);
        }
        let state = get(&id)?.map_or("terminated".to_string(), |i| i.state);
        if state != last {
            on(Event::Phase(format!("{id} {state}")));
            on(Event::Progress(format!("{id} {state}")));
            last = state;
        }
        if last == "terminated" {
            break;
        }
        if deadline.is_some_and(|d| now() > d) && !terminated_by_bootforge {
            on(Event::Progress(format!(
                "{id} is past its deadline: terminating it"
            )));
            terminate(std::slice::from_ref(instance));
            terminated_by_bootforge = true;
        }
        std::thread::sleep(intervals.status);
    }
    if let Some(f) = follow.as_mut() {
        f.poll(on);
    }
    Ok(ended(instance, claim, job_dir, terminated_by_bootforge))
}

/// How the run of a gone local instance ended: its own status from the
/// EFS folder, else from its console (shut down from outside, the EFS was
/// gone before the status), else none.
fn ended(
    instance: &Instance,
    claim: &Claim,
    job_dir: &Path,
    terminated_by_bootforge: bool,
) -> Finished {
    let mut source = "efs";
    let mut status = read_status(job_dir, &instance.id);
    if status.is_none() {
        source = "console";
        let console = std::fs::read_to_string(folder(claim).join("log/cloud-init-output.log"));
        status = console.ok().and_then(|c| console_status(&c, &instance.id));
    }
    let outcome = status
        .as_ref()
        .and_then(|s| s["outcome"].as_str())
        .unwrap_or("no_status")
        .to_string();
    Finished {
        state: "terminated".to_string(),
        source: if status.is_some() { source } else { "none" },
        exit_code: exit_code(&outcome),
        outcome,
        status,
        state_reason: None,
        terminated_by_bootforge,
    }
}

/// `launch --local --dry-run`: whether a local launch could start (the
/// image, the EFS folder, the job's log directory on it, the cost guard),
/// without starting anything.
pub fn dry_run(compiled: &Compiled, efs: Option<&Path>) -> Result<crate::aws::ec2::DryRun> {
    let image = image();
    if !image_exists(&image)? {
        return Ok(crate::aws::ec2::DryRun {
            allowed: false,
            message: format!("the smoke image {image} is not built: run `bootforge smoke image`"),
        });
    }
    let efs = efs_root(compiled, efs)?;
    let host_dir = host_log_dir(compiled, &mounts(compiled), &efs)?;
    let claim = Claim::new(
        &compiled.profile.name,
        &compiled.profile.profile.job.id,
        1,
        &compiled.payload.sha256(),
        now(),
    );
    plan(compiled, &claim)?;
    Ok(crate::aws::ec2::DryRun {
        allowed: true,
        message: format!(
            "a local launch would boot {image} with {} as the EFS (the job's directory: {})",
            efs.display(),
            host_dir.join(&compiled.profile.profile.job.id).display()
        ),
    })
}

/// `launch --local`: one job, one container, under the job's claim on the
/// EFS folder, as `launch` does with EC2.
pub fn launch(compiled: &Compiled, request: &Request, on: &mut dyn FnMut(Event)) -> Result<Report> {
    let image = image();
    if !image_exists(&image)? {
        return Err(environment(
            format!("the smoke image {image} is not built"),
            "build it with `bootforge smoke image`",
        ));
    }
    let efs = efs_root(compiled, request.efs.as_deref())?;
    let mounts = mounts(compiled);
    let host_dir = host_log_dir(compiled, &mounts, &efs)?;
    std::fs::create_dir_all(&host_dir).map_err(|e| Error::io(&host_dir, "create directory", e))?;
    let job = compiled.profile.profile.job.id.clone();
    let claims = Claims::open(&host_dir, &local_claims(), &job)?;
    on(Event::Phase(format!("claiming job {job}")));
    let start = Instant::now();
    let (launched, claim) = loop {
        let claimed = claims.read()?.and_then(|c| c.instance_id);
        let over = match &claimed {
            Some(id) => get(id)?.is_none_or(|i| i.state == "terminated"),
            None => false,
        };
        match claim_step(&claims, compiled, request.rerun, over)? {
            Decision::Launch(claim) => {
                on(Event::Phase(format!(
                    "booting run {} of job {job}",
                    claim.run
                )));
                let started = start_run(compiled, &claims, &claim, &efs, &mounts);
                let instance = match started {
                    Ok(i) => i,
                    Err(e) => {
                        settle(&claims, claim.run, None, Some(e.to_string()))?;
                        return Err(e);
                    }
                };
                on(Event::Progress(format!(
                    "job {job} run {}: {} started (EFS {})",
                    claim.run,
                    instance.id,
                    efs.display()
                )));
                break (launched(true, claim.run, instance, None, &claims), claim);
            }
            Decision::Attach(claim) => {
                let id = claim.instance_id.clone().unwrap_or_default();
                on(Event::Progress(format!(
                    "job {job} run {} already has instance {id}: not launching another",
                    claim.run
                )));
                match get(&id)? {
                    Some(i) if i.state != "terminated" => {
                        break (launched(false, claim.run, i, None, &claims), claim);
                    }
                    _ => {
                        let gone = gone(&id, &claim);
                        let finished = ended(&gone, &claim, claims.dir(), false);
                        break (
                            launched(false, claim.run, gone, Some(finished), &claims),
                            claim,
                        );
                    }
                }
            }
            Decision::Refuse(message) => return Err(Error::Usage { message }),
            Decision::Wait(claim) => {
                still_starting(&claims, &claim, start)?;
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    };
    let waited = match (&launched.finished, request.wait) {
        (None, true) => Some(wait(
            &launched.instance,
            &claim,
            claims.dir(),
            request.intervals,
            request.follow,
            on,
        )?),
        _ => None,
    };
    Ok(report(compiled, launched, waited, &claims))
}

/// Starts the run's container and records it in the claim.
fn start_run(
    compiled: &Compiled,
    claims: &Claims,
    claim: &Claim,
    efs: &Path,
    mounts: &[EfsMount],
) -> Result<Instance> {
    let instance = start(compiled, claim, efs, mounts)?;
    settle(claims, claim.run, Some(&instance.id), None)?;
    Ok(instance)
}

/// A local instance whose container is gone, as its claim remembers it.
fn gone(id: &str, claim: &Claim) -> Instance {
    Instance {
        id: id.to_string(),
        state: "terminated".to_string(),
        instance_type: String::new(),
        subnet: None,
        private_ip: None,
        launched: Some(claim.launched_at),
        profile: Some(claim.profile.clone()),
        job: Some(claim.job.clone()),
        run: Some(claim.run.to_string()),
        deadline: None,
        state_reason: None,
    }
}

fn launched(
    launched: bool,
    run: u32,
    instance: Instance,
    finished: Option<Finished>,
    claims: &Claims,
) -> Launched {
    Launched {
        launched,
        run,
        instance,
        attempt: None,
        no_capacity: Vec::new(),
        // Nothing is billed here.
        price_per_hour: None,
        cost_at_timeout: None,
        finished,
        claim_shared: claims.shared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_dir_is_found_in_the_efs_folder() {
        let library = crate::Library::builtin();
        let compiled = crate::compile(&library, crate::DEFAULT_PROFILE, &[]).unwrap();
        let mounts = mounts(&compiled);
        let dir = host_log_dir(&compiled, &mounts, Path::new("/srv/efs")).unwrap();
        // log_dir /home/ec2-user/recordings/bootforge/jobs, the EFS root mounted at recordings.
        assert_eq!(dir, Path::new("/srv/efs/bootforge/jobs"));
    }

    #[test]
    fn a_folder_the_jobs_user_cannot_enter_is_refused_before_launch() {
        use std::os::unix::fs::PermissionsExt as _;
        assert!(lets_through(0o755, 0, 0));
        assert!(lets_through(0o700, JOB_UID, 0));
        assert!(lets_through(0o750, 0, JOB_UID));
        assert!(!lets_through(0o700, 0, 0));
        assert!(!lets_through(0o770, 0, 0));
        assert!(!lets_through(0o601, JOB_UID, 0));

        let library = crate::Library::builtin();
        let compiled = crate::compile(&library, crate::DEFAULT_PROFILE, &[]).unwrap();
        let mounts = mounts(&compiled);
        let efs = tempfile::tempdir().unwrap();
        let jobs = efs.path().join("bootforge/jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        let mode = |dir: &Path, m: u32| {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(efs.path(), 0o755);
        assert!(host_log_dir(&compiled, &mounts, efs.path()).is_ok());
        // A `mktemp -d` folder as the EFS, or a closed folder on the way.
        for closed in [efs.path().to_path_buf(), jobs.clone()] {
            mode(&closed, 0o700);
            let err = host_log_dir(&compiled, &mounts, efs.path()).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("chmod o+x {}", closed.display())),
                "{text}"
            );
            mode(&closed, 0o755);
        }
        // The /app mount's folder is entered too, to read the pipeline.
        let app = efs.path().join("app");
        std::fs::create_dir(&app).unwrap();
        mode(&app, 0o700);
        assert!(host_log_dir(&compiled, &mounts, efs.path()).is_err());
    }

    #[test]
    fn the_efs_is_the_file_system_that_holds_the_logs() {
        assert_eq!(
            mount_point_of(Path::new("/proc/self")),
            Some(PathBuf::from("/proc"))
        );
        assert_eq!(mount_point_of(Path::new("/")), Some(PathBuf::from("/")));
    }
}
