//! `launch --local`: a job rehearsed on this machine. Everything `launch`
//! does (the compile, the cost guard, the job's claim, the wait and its
//! report) with the instance played by a container of the smoke image,
//! booted from the same payload bytes under systemd and cloud-init. The EFS
//! is a host folder, checked before anything starts; the GPU is the
//! stand-in. The containers themselves are `instances`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::boot::{EfsMount, mounts};
use super::environment;
use super::image::{image, image_exists};
use super::instances::{REASON_FILE, folder, get, gone, start, terminate};
use crate::aws::claim::{Claim, Claims};
use crate::aws::decide::{Decision, claim_step, settle, still_starting};
use crate::aws::ec2::Instance;
use crate::aws::job::{QUEUED_LOOK, deliver, local_claims};
use crate::aws::operate::{Launched, Started};
use crate::aws::plan::plan;
use crate::aws::report::{Report, Step, max_attempts, next_step, queued, recorded};
use crate::aws::wait::{Finished, Follow, Intervals, console_status, read_status};
use crate::clock::{now, parse_rfc3339};
use crate::compile::Compiled;
use crate::compile::paths::holder;
use crate::diagnostics::{Error, Result};
use crate::progress::Event;

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

/// Where a local job's directories are on this host (the job's
/// `host_log_dir` in the EFS folder `efs`, or the default one): for
/// `status --local` and `logs --local`.
pub fn jobs_dir(compiled: &Compiled, efs: Option<&Path>) -> Result<PathBuf> {
    let efs = efs_root(compiled, efs)?;
    host_log_dir(compiled, &mounts(compiled), &efs)
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
/// gone before the status), else none; its StateReason as the rehearsal
/// recorded it.
pub(crate) fn ended(
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
    let mut finished = Finished::of("terminated", status, source, state_reason(claim));
    finished.terminated_by_bootforge = terminated_by_bootforge;
    finished
}

/// Why the local instance of `claim`'s attempt ended, as EC2's StateReason
/// would say, when the rehearsal recorded it.
pub(crate) fn state_reason(claim: &Claim) -> Option<crate::aws::ec2::StateReason> {
    std::fs::read_to_string(folder(claim).join(REASON_FILE))
        .ok()
        .map(|code| crate::aws::ec2::StateReason {
            message: format!("{}: as a local instance rehearses it", code.trim()),
            code: code.trim().to_string(),
        })
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
    plan(compiled, &crate::aws::decide::fresh_claim(compiled, now()))?;
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
    let (efs, mounts, claims) = place(compiled, request.efs.as_deref())?;
    let job = compiled.profile.profile.job.id.clone();
    let policy = compiled.profile.profile.job.retry.as_ref();
    on(Event::Phase(format!("claiming job {job}")));
    let mut rerun = request.rerun;
    loop {
        let started = claim_attempt(compiled, &claims, rerun, &efs, &mounts, on)?;
        rerun = false;
        let launched = match started {
            Started::Instance(launched) => *launched,
            Started::Ended(claim) => return deliver(&claims, recorded(&claim)?, request.wait),
            Started::Queued(claim, place) => {
                if !request.wait {
                    return Ok(queued(&claim, max_attempts(policy), "", place, &claims));
                }
                on(Event::Phase(format!("queued (place {place})")));
                std::thread::sleep(QUEUED_LOOK);
                continue;
            }
        };
        let finished = match (launched.finished.clone(), request.wait) {
            (Some(f), _) => Some(f),
            (None, true) => {
                let claim = claims.read()?.ok_or_else(|| Error::Environment {
                    message: format!("the claim on job {job} is gone"),
                    help: Some(format!("see {}", claims.dir().display())),
                })?;
                Some(wait(
                    &launched.instance,
                    &claim,
                    claims.dir(),
                    request.intervals,
                    request.follow,
                    on,
                )?)
            }
            (None, false) => None,
        };
        match next_step(policy, &claims, launched, finished, request.wait, on)? {
            Step::Report(report) => return Ok(*report),
            Step::Again => {}
        }
    }
}

/// Where a local job lives: the EFS folder, the profile's mounts in it, and
/// the job's claims in its host log directory there.
pub(crate) fn place(
    compiled: &Compiled,
    efs: Option<&Path>,
) -> Result<(PathBuf, Vec<EfsMount>, Claims)> {
    let image = image();
    if !image_exists(&image)? {
        return Err(environment(
            format!("the smoke image {image} is not built"),
            "build it with `bootforge smoke image`",
        ));
    }
    let efs = efs_root(compiled, efs)?;
    let mounts = mounts(compiled);
    let host_dir = host_log_dir(compiled, &mounts, &efs)?;
    std::fs::create_dir_all(&host_dir).map_err(|e| Error::io(&host_dir, "create directory", e))?;
    let claims = Claims::open(&host_dir, &local_claims(), &compiled.profile.profile.job.id)?;
    Ok((efs, mounts, claims))
}

/// The claim's decision for the job's current attempt, carried out: a
/// container started for it, or the one it has (found gone: its outcome),
/// or the job queued, or its recorded end.
fn claim_attempt(
    compiled: &Compiled,
    claims: &Claims,
    rerun: bool,
    efs: &Path,
    mounts: &[EfsMount],
    on: &mut dyn FnMut(Event),
) -> Result<Started> {
    let job = &compiled.profile.profile.job.id;
    let start = Instant::now();
    loop {
        let claimed = claims.read()?.and_then(|c| c.instance_id);
        let over = match &claimed {
            Some(id) => get(id)?.is_none_or(|i| i.state == "terminated"),
            None => false,
        };
        match claim_step(claims, compiled, rerun, over)? {
            Decision::Launch(claim) => {
                return start_attempt(compiled, claims, claim, efs, mounts, on);
            }
            Decision::Attach(claim) => {
                let id = claim.instance_id.clone().unwrap_or_default();
                on(Event::Progress(format!(
                    "job {job} run {} attempt {} already has instance {id}: not launching another",
                    claim.run, claim.attempt
                )));
                return Ok(Started::Instance(Box::new(match get(&id)? {
                    Some(i) if i.state != "terminated" => launched(false, &claim, i, None, claims),
                    _ => {
                        let gone = gone(&id, &claim);
                        let finished = ended(&gone, &claim, claims.dir(), false);
                        launched(false, &claim, gone, Some(finished), claims)
                    }
                })));
            }
            Decision::Queued(claim, place) => return Ok(Started::Queued(Box::new(claim), place)),
            Decision::Ended(claim) => return Ok(Started::Ended(Box::new(claim))),
            Decision::Refuse(message) => return Err(Error::Usage { message }),
            Decision::Wait(claim) => {
                still_starting(claims, &claim, start)?;
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// Starts the container of `claim`'s attempt (claimed by this process),
/// and records it in the claim.
pub(crate) fn start_attempt(
    compiled: &Compiled,
    claims: &Claims,
    claim: Claim,
    efs: &Path,
    mounts: &[EfsMount],
    on: &mut dyn FnMut(Event),
) -> Result<Started> {
    let job = &claim.job;
    on(Event::Phase(format!(
        "booting run {} attempt {} of job {job}",
        claim.run, claim.attempt
    )));
    let instance = match start_run(compiled, claims, &claim, efs, mounts) {
        Ok(i) => i,
        Err(e) => {
            settle(claims, claim.key(), None, Some(e.to_string()))?;
            return Err(e);
        }
    };
    on(Event::Progress(format!(
        "job {job} run {} attempt {}: {} started (EFS {})",
        claim.run,
        claim.attempt,
        instance.id,
        efs.display()
    )));
    Ok(Started::Instance(Box::new(launched(
        true, &claim, instance, None, claims,
    ))))
}

/// Starts the run's container and records it in the claim.
fn start_run(
    compiled: &Compiled,
    claims: &Claims,
    claim: &Claim,
    efs: &Path,
    mounts: &[EfsMount],
) -> Result<Instance> {
    let instance = start(
        compiled,
        claim,
        claims.dir().parent().unwrap_or(claims.dir()),
        efs,
        mounts,
    )?;
    settle(claims, claim.key(), Some(&instance.id), None)?;
    Ok(instance)
}

fn launched(
    launched: bool,
    claim: &Claim,
    instance: Instance,
    finished: Option<Finished>,
    claims: &Claims,
) -> Launched {
    Launched {
        launched,
        run: claim.run,
        attempt: claim.attempt,
        instance,
        request: None,
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
