//! One boot: the host folders the container shares (the EFS, the records of
//! the stand-ins, the machine's logs and state), the container itself
//! (systemd as PID 1, cloud-init's own units, the payload as NoCloud
//! user-data), and its end: the container stopping is the power-off.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;
use testcontainers::core::{ExecCommand, Host, Mount};
use testcontainers::runners::SyncRunner;
use testcontainers::{GenericImage, ImageExt};

use super::environment;
use super::image::docker;
use super::scenarios::{Intervention, Ordering, Scenario};
use crate::compile::Compiled;
use crate::diagnostics::{Error, Result};

/// The stand-in for the job's pipeline, written onto the EFS folder.
const PIPELINE: &str = include_str!("../../tests/fixtures/smoke/simulate_pipeline.sh");

/// A fresh instance id for one boot, as EC2 gives every instance its own.
fn instance_id() -> String {
    use sha2::Digest as _;
    let seed = format!("{} {}", std::process::id(), epoch());
    let hash = sha2::Sha256::digest(seed.as_bytes());
    format!(
        "i-0{}",
        hash.iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// An EFS mount of the profile: (fs id, sub-path, mount point).
pub type EfsMount = (String, String, String);

/// The EFS mounts of a compiled profile.
pub fn mounts(compiled: &Compiled) -> Vec<EfsMount> {
    compiled
        .param("efs-mount", "mounts")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (field("fs_id"), field("path"), field("mount_point"))
        })
        .collect()
}

/// The host folders a boot shares with its container.
pub struct Folders {
    pub root: PathBuf,
    /// This boot's instance id (its NoCloud meta-data).
    pub instance_id: String,
    /// Plays the EFS: `FS_ID/PATH` below it (or, with `--efs`, the user's
    /// own folder, every file system served from it).
    pub efs: PathBuf,
    /// Whether `efs` is the user's folder (then nothing is written to it
    /// but what the job writes).
    pub own_efs: bool,
    /// What the stand-ins were asked, with times; the pipeline's records.
    pub records: PathBuf,
    /// The machine's /var/log: cloud-init's logs, the journal.
    pub log: PathBuf,
    /// The machine's /var/lib/cloud: the seed, cloud-init's own state.
    pub cloud: PathBuf,
    /// The machine's state directory (the job's local status, the stamp).
    pub state: PathBuf,
}

impl Folders {
    /// Where an instance path under an EFS mount lands on the host.
    pub fn on_efs(&self, mounts: &[EfsMount], path: &str) -> Option<PathBuf> {
        let at = crate::compile::paths::holder(path, mounts.iter().map(|(_, _, at)| at.as_str()))?;
        let (fs, sub, _) = mounts.iter().find(|(_, _, m)| m == at)?;
        let rest = path[at.trim_end_matches('/').len()..].trim_start_matches('/');
        let base = if self.own_efs {
            self.efs.clone()
        } else {
            self.efs.join(fs)
        };
        Some(base.join(sub.trim_start_matches('/')).join(rest))
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    }
    fs::write(path, text).map_err(|e| Error::io(path, "write", e))
}

fn mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
}

/// Lays out the folders: the EFS as the job expects it (the pipeline
/// stand-in, the requirements, an earlier run's leftovers), the seed, and
/// the scenario's switches.
pub fn prepare(
    root: PathBuf,
    own_efs: Option<&Path>,
    compiled: &Compiled,
    scenario: &Scenario,
    mounts: &[EfsMount],
) -> Result<Folders> {
    let folders = Folders {
        instance_id: instance_id(),
        efs: own_efs.map_or_else(|| root.join("efs"), Path::to_path_buf),
        own_efs: own_efs.is_some(),
        records: root.join("records"),
        log: root.join("log"),
        cloud: root.join("cloud"),
        state: root.join("state"),
        root,
    };
    for dir in [
        &folders.efs,
        &folders.records,
        &folders.log.join("journal"),
        &folders.cloud.join("seed/nocloud"),
        &folders.state,
    ] {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    }
    // Written by root and by the job's user in the container.
    mode(&folders.records, 0o1777);
    for log in ["timeline", "shutdown.log", "mounts.log", "nvidia-smi.log"] {
        write(&folders.records.join(log), "")?;
        mode(&folders.records.join(log), 0o666);
    }
    if folders.own_efs {
        return Ok(folders);
    }
    mode(&folders.efs, 0o1777);
    for (fs_id, sub, _) in mounts {
        let dir = folders.efs.join(fs_id).join(sub.trim_start_matches('/'));
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create directory", e))?;
        mode(&dir, 0o1777);
    }
    let param = |snippet: &str, name: &str| {
        compiled
            .param(snippet, name)
            .and_then(Value::as_str)
            .and_then(|p| folders.on_efs(mounts, p))
    };
    if let Some(script) = param("pipeline", "script") {
        write(&script, PIPELINE)?;
        mode(&script, 0o755);
        write(&script.with_file_name("smoke-mode"), scenario.pipeline)?;
    }
    if let (Some(file), Some(text)) = (param("requirements", "file"), scenario.requirements) {
        write(&file, text)?;
    }
    if scenario.stale {
        let job = &compiled.profile.profile.job;
        if let Some(dir) = folders.on_efs(mounts, &format!("{}/{}", job.log_dir, job.id)) {
            write(&dir.join("run-id"), "i-0earlier0000000 an-earlier-boot\n")?;
            write(&dir.join("status.json"), STALE_STATUS)?;
            write(&dir.join("job.log"), "the earlier run's log\n")?;
            write(&dir.join("output/result.txt"), "earlier\n")?;
        }
        // A stamp of another instance: an AMI baked from a finished job.
        write(
            &folders.state.join("boot"),
            "i-0earlier0000000 an-earlier-boot 1000000000 1000007800\n",
        )?;
    }
    Ok(folders)
}

/// The status an earlier run left, in `stale-run`.
pub const STALE_STATUS: &str = "{\"job_id\": \"manual\", \"instance_id\": \"i-0earlier0000000\", \"outcome\": \"failed\", \"exit_code\": 1}\n";

/// How a boot ended.
pub struct Ended {
    /// The container stopped by itself (it powered off).
    pub powered_off: bool,
    /// When it stopped (seconds since the epoch), from the engine.
    pub stopped_at: Option<f64>,
    /// From the start to the stop, seconds.
    pub total: f64,
    pub container: String,
    /// What the harness did to the boot (runner-killed, a power-off from
    /// outside, a spot notice), with its time.
    pub interventions: Vec<(String, f64)>,
    /// When the job's status on the EFS first said `interrupted`.
    pub interrupted_on_efs_at: Option<f64>,
}

fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Starts the container, waits (at most `deadline`) for it to power off,
/// and removes it.
pub fn boot(
    image: &str,
    compiled: &Compiled,
    scenario: &Scenario,
    ordering: Ordering,
    folders: &Folders,
    mounts: &[EfsMount],
    deadline: Duration,
) -> Result<Ended> {
    let instance = &compiled.profile.profile.instance;
    let meta_data = format!(
        "instance-id: {}\nlocal-hostname: bootforge-smoke\ninstance-type: {}\n",
        folders.instance_id,
        instance.types.first().cloned().unwrap_or_default()
    );
    let switches = format!(
        "SMOKE_SCENARIO={}\nSMOKE_NO_EFS={}\nSMOKE_EFS_FAIL={}\nSMOKE_NO_GPU={}\nSMOKE_ORDERING={}\nSMOKE_EFS_RENAME_DELAY={}\n",
        scenario.name,
        u8::from(scenario.no_efs),
        scenario.efs_fail.unwrap_or_default(),
        u8::from(scenario.no_gpu),
        ordering.name(),
        scenario.efs_rename_delay.unwrap_or_default(),
    );
    let (pip_conf, uv_toml) = indexes(scenario);
    let seed = folders.cloud.join("seed/nocloud");
    write(&seed.join("meta-data"), &meta_data)?;
    fs::write(seed.join("user-data"), &compiled.payload.bytes)
        .map_err(|e| Error::io(seed.join("user-data"), "write", e))?;
    write(&folders.root.join("scenario.env"), &switches)?;

    let bind = |host: &Path, at: &str| Mount::bind_mount(host.display().to_string(), at);
    // Labels this boot's container, to remove it even when starting it fails.
    let run = format!("{}-{}", std::process::id(), epoch());
    let (repo, tag) = image.split_once(':').unwrap_or((image, "latest"));
    let mut request = GenericImage::new(repo, tag)
        .with_cmd(["/lib/systemd/systemd"])
        .with_env_var("container", "docker")
        .with_cap_add("SYS_ADMIN")
        // The metadata stand-in gives the loopback 169.254.169.254.
        .with_cap_add("NET_ADMIN")
        .with_label("org.bootforge.smoke", scenario.name)
        .with_label("org.bootforge.smoke.run", &run)
        .with_network("none")
        .with_mount(Mount::tmpfs_mount("/run"))
        .with_mount(Mount::tmpfs_mount("/run/lock"))
        .with_mount(
            bind(Path::new("/sys/fs/cgroup"), "/sys/fs/cgroup")
                .with_access_mode(testcontainers::core::AccessMode::ReadOnly),
        )
        .with_mount(bind(&folders.records, "/smoke/records"))
        .with_mount(bind(&folders.log, "/var/log"))
        .with_mount(bind(&folders.cloud, "/var/lib/cloud"))
        .with_mount(bind(
            &folders.state,
            &compiled.profile.profile.job.state_dir,
        ))
        .with_copy_to("/smoke/scenario.env", switches.into_bytes())
        .with_copy_to("/etc/pip.conf", pip_conf.into_bytes())
        .with_copy_to("/etc/uv/uv.toml", uv_toml.into_bytes())
        .with_host_config_modifier(|config| {
            // The EFS stand-in is a FUSE server; the requirements' cache
            // images are mounted through loop devices, which the kernel
            // shares among containers: the host's are passed in.
            config.devices = Some(
                ["/dev/fuse", "/dev/loop-control"]
                    .into_iter()
                    .map(str::to_string)
                    .chain(loop_devices())
                    .map(|d| bollard_device(&d))
                    .collect(),
            );
        });
    let mut served = Vec::new();
    for (fs_id, _, _) in mounts {
        let dns = format!("{fs_id}.efs.{}.amazonaws.com", instance.region);
        request = request.with_host(dns, Host::Addr([127, 0, 0, 1].into()));
        // The user's own folder serves every file system of the profile.
        if folders.own_efs && !served.contains(fs_id) {
            request = request.with_mount(bind(&folders.efs, &format!("/smoke/efs/{fs_id}")));
            served.push(fs_id.clone());
        }
    }
    if !folders.own_efs {
        request = request.with_mount(bind(&folders.efs, "/smoke/efs"));
    }

    let started = Instant::now();
    let container = request.start().map_err(|e| {
        // A container created but not started is left behind otherwise.
        let filter = format!("label=org.bootforge.smoke.run={run}");
        if let Ok(out) = docker(&["ps", "-aq", "--filter", &filter]) {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
        environment(
            format!("cannot start the smoke container: {e}"),
            "the Docker engine must be running and allow containers with CAP_SYS_ADMIN, CAP_NET_ADMIN and /dev/fuse",
        )
    })?;
    let id = container.id().to_string();
    let job = &compiled.profile.profile.job;
    let status_file = folders
        .on_efs(mounts, &format!("{}/{}", job.log_dir, job.id))
        .map(|d| d.join("status.json"));
    let mut interventions = Vec::new();
    let mut interrupted_on_efs_at = None;
    let mut action_at: Option<f64> = None;
    let mut powered_off = false;
    // As EC2 ends an instance: systemd is asked to power off.
    let power_off = || {
        let _ = docker(&["kill", "--signal", "SIGRTMIN+4", &id]);
    };
    while started.elapsed() < deadline {
        if !container.is_running().unwrap_or(false) {
            powered_off = true;
            break;
        }
        if interrupted_on_efs_at.is_none()
            && status_file
                .as_ref()
                .and_then(|f| fs::read_to_string(f).ok())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|s| s["outcome"] == "interrupted")
        {
            interrupted_on_efs_at = Some(epoch());
        }
        // The stand-in pipelines that wait say when they do (their traps set).
        let running = || {
            fs::read_to_string(folders.records.join("timeline"))
                .is_ok_and(|t| t.contains("pipeline-ready "))
        };
        if interventions.is_empty() && scenario.intervention != Intervention::None && running() {
            let at = epoch();
            match scenario.intervention {
                Intervention::None => {}
                Intervention::KillRunner => {
                    // As the OOM killer would: SIGKILL, no trap runs.
                    let _ =
                        container.exec(ExecCommand::new(["pkill", "-KILL", "-x", "bootforge-job"]));
                    interventions.push(("runner SIGKILLed".to_string(), at));
                }
                Intervention::PowerOff => {
                    power_off();
                    interventions.push(("powered off from outside".to_string(), at));
                }
                Intervention::SpotNotice { warning } => {
                    let when = std::time::UNIX_EPOCH + Duration::from_secs(at as u64 + warning);
                    let notice = format!(
                        "{{\"action\": \"terminate\", \"time\": \"{}\"}}\n",
                        humantime::format_rfc3339_seconds(when)
                    );
                    write(&folders.records.join("spot-notice"), &notice)?;
                    action_at = Some(at + warning as f64);
                    interventions.push(("spot interruption notice".to_string(), at));
                }
            }
        }
        if action_at.is_some_and(|a| epoch() >= a) {
            // The notice's action time: EC2 takes the instance back.
            action_at = None;
            power_off();
            interventions.push(("spot action: powered off".to_string(), epoch()));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let total = started.elapsed().as_secs_f64();
    let stopped_at = powered_off.then(|| finished_at(&id)).flatten();
    // Dropping the container removes it, also when the boot overran.
    drop(container);
    Ok(Ended {
        powered_off,
        stopped_at,
        total,
        container: id,
        interventions,
        interrupted_on_efs_at,
    })
}

/// pip's and uv's configuration in the container: their only index is the
/// image's wheelhouse, never the network (uv does not read pip.conf). The
/// uv wheel is in pip's index unless the scenario takes uv away.
fn indexes(scenario: &Scenario) -> (String, String) {
    let uv = if scenario.uv { " /opt/uv" } else { "" };
    (
        format!("[global]\nno-index = true\nfind-links = /opt/wheels{uv}\n"),
        "[pip]\nno-index = true\nfind-links = [\"/opt/wheels\"]\n".to_string(),
    )
}

/// The host's loop devices (`/dev/loopN`), which a container's /dev lacks.
fn loop_devices() -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("loop")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|n| format!("/dev/{n}"))
        .collect();
    found.sort();
    found
}

fn bollard_device(path: &str) -> testcontainers::bollard::models::DeviceMapping {
    testcontainers::bollard::models::DeviceMapping {
        path_on_host: Some(path.to_string()),
        path_in_container: Some(path.to_string()),
        cgroup_permissions: Some("rwm".to_string()),
    }
}

/// When the engine saw the container stop, in seconds since the epoch.
fn finished_at(id: &str) -> Option<f64> {
    let out = docker(&["inspect", "--format", "{{.State.FinishedAt}}", id]).ok()?;
    crate::clock::parse_rfc3339_fraction(String::from_utf8_lossy(&out.stdout).trim())
}
