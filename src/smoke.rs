//! Smoke tests: the exact payload booted under real cloud-init in a local
//! container, with stand-ins for what a container lacks (the EFS, the GPU,
//! the power switch), and a report of what the boot did.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value;
use sha2::Digest as _;
use testcontainers::core::{Host, Mount};
use testcontainers::runners::SyncRunner;
use testcontainers::{GenericImage, ImageExt};

use crate::compile::{Compiled, compile};
use crate::error::{Error, Result};
use crate::library::Library;
use crate::profile::Override;

/// The image recipe: every file that goes into the image, by name.
const RECIPE: &[(&str, &str)] = &[
    ("build-image.sh", include_str!("smoke/build-image.sh")),
    ("smoke-init", include_str!("smoke/smoke-init")),
    ("shutdown", include_str!("smoke/shutdown")),
    ("mount-helper", include_str!("smoke/mount-helper")),
    ("nvidia-smi", include_str!("smoke/nvidia-smi")),
    ("99-smoke.cfg", include_str!("smoke/99-smoke.cfg")),
];

/// The stand-in for the job's pipeline, written onto the EFS folder.
const PIPELINE: &str = include_str!("../tests/fixtures/smoke/simulate_pipeline.sh");

/// The image's repository name; its tag is a hash of the recipe.
pub const IMAGE: &str = "bootforge-smoke";

/// The tag of the image the current recipe builds.
pub fn image_tag() -> String {
    let mut hash = sha2::Sha256::new();
    for (name, text) in RECIPE {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    hash.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn environment(message: impl Into<String>, help: impl Into<String>) -> Error {
    Error::Environment {
        message: message.into(),
        help: Some(help.into()),
    }
}

fn docker(args: &[&str]) -> Result<std::process::Output> {
    Command::new("docker").args(args).output().map_err(|e| {
        environment(
            format!("cannot run the docker command: {e}"),
            "install Docker and make sure `docker` is on PATH",
        )
    })
}

fn image_exists(reference: &str) -> Result<bool> {
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", reference])?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such image") || err.contains("not found") {
        Ok(false)
    } else {
        Err(environment(
            format!("the Docker engine does not answer: {}", err.trim()),
            "start it (for example `systemctl start docker`), or point DOCKER_HOST at it",
        ))
    }
}

/// What `smoke image` did.
#[derive(Debug, Clone, Serialize)]
pub struct ImageBuild {
    pub image: String,
    /// False when an image of the same recipe was there already.
    pub built: bool,
    pub seconds: f64,
}

/// Builds the smoke image from the recipe (debootstrap, stand-ins, `docker
/// import`) unless an image of the same recipe exists; `force` rebuilds.
pub fn build_image(force: bool) -> Result<ImageBuild> {
    let image = format!("{IMAGE}:{}", image_tag());
    let start = Instant::now();
    if !force && image_exists(&image)? {
        return Ok(ImageBuild {
            image,
            built: false,
            seconds: 0.0,
        });
    }
    let work = tempfile::tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), "create a directory in", e))?;
    let files = work.path().join("files");
    fs::create_dir_all(&files).map_err(|e| Error::io(&files, "create directory", e))?;
    for (name, text) in RECIPE {
        let path = files.join(name);
        fs::write(&path, text).map_err(|e| Error::io(&path, "write", e))?;
    }
    let status = Command::new("bash")
        .arg(files.join("build-image.sh"))
        .arg(work.path())
        .arg(&files)
        .arg(&image)
        .status()
        .map_err(|e| environment(format!("cannot run bash: {e}"), "install bash"))?;
    if !status.success() {
        return Err(environment(
            format!("building the smoke image {image} failed ({status})"),
            "it needs root, debootstrap, the machine's Debian mirror and a Docker engine; the lines above say which failed",
        ));
    }
    // Images of older recipes only take disk space now.
    let tags = docker(&["images", IMAGE, "--format", "{{.Tag}}"])?;
    for old in String::from_utf8_lossy(&tags.stdout)
        .lines()
        .filter(|t| *t != image_tag())
    {
        let _ = docker(&["image", "rm", &format!("{IMAGE}:{old}")]);
    }
    Ok(ImageBuild {
        image,
        built: true,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// What a scenario does to the boot, and what it must end in.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    /// `--set` values the scenario needs (a short timeout, short waits).
    pub sets: &'static [&'static str],
    /// How the pipeline stand-in behaves: ok, fail or hang.
    pub pipeline: &'static str,
    /// What the requirements file holds; `None` for no file.
    pub requirements: Option<&'static str>,
    pub no_efs: bool,
    pub no_gpu: bool,
    pub outcome: &'static str,
    pub exit_code: i64,
}

/// Every scenario, in the order they run by default.
pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ok",
        summary: "everything works; the payload is the one launched",
        sets: &[],
        pipeline: "ok",
        requirements: Some("pip\n"),
        no_efs: false,
        no_gpu: false,
        outcome: "succeeded",
        exit_code: 0,
    },
    Scenario {
        name: "fail",
        summary: "the pipeline exits 3",
        sets: &[],
        pipeline: "fail",
        requirements: Some("pip\n"),
        no_efs: false,
        no_gpu: false,
        outcome: "failed",
        exit_code: 3,
    },
    Scenario {
        name: "hang",
        summary: "the pipeline ignores SIGTERM past a 20-second budget",
        sets: &["job.timeout=20s", "job.kill_after=3s", "job.grace=1m"],
        pipeline: "hang",
        requirements: Some("pip\n"),
        no_efs: false,
        no_gpu: false,
        outcome: "timed_out",
        exit_code: 137,
    },
    Scenario {
        name: "no-requirements",
        summary: "no requirements_gpu.txt: the step is skipped",
        sets: &[],
        pipeline: "ok",
        requirements: None,
        no_efs: false,
        no_gpu: false,
        outcome: "succeeded",
        exit_code: 0,
    },
    Scenario {
        name: "bad-requirements",
        summary: "pip cannot install a requirement (offline wheel folder, never the network)",
        sets: &[],
        pipeline: "ok",
        requirements: Some("bootforge-no-such-package==1.0\n"),
        no_efs: false,
        no_gpu: false,
        outcome: "deps_failed",
        exit_code: 1,
    },
    Scenario {
        name: "no-efs",
        summary: "the mount helper fails: status on the console, shutdown still happens",
        sets: &["snippets.efs-mount.attempts=2"],
        pipeline: "ok",
        requirements: Some("pip\n"),
        no_efs: true,
        no_gpu: false,
        outcome: "mount_failed",
        exit_code: 1,
    },
    Scenario {
        name: "no-gpu",
        summary: "nvidia-smi never answers",
        sets: &["snippets.gpu-ready.wait_seconds=5"],
        pipeline: "ok",
        requirements: Some("pip\n"),
        no_efs: false,
        no_gpu: true,
        outcome: "gpu_missing",
        exit_code: 1,
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
                SCENARIOS
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

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
    pub cloud_init_to_pipeline: Option<f64>,
    pub pipeline_end_to_shutdown: Option<f64>,
    pub deadline_to_shutdown: Option<f64>,
    pub total: f64,
}

/// What one smoke run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub profile: String,
    pub scenario: String,
    pub image: String,
    pub payload_sha256: String,
    pub payload_bytes: usize,
    pub checks: Vec<Check>,
    pub timings: Timings,
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
            "smoke {} / {}: {} ({} bytes, sha256 {}, image {})",
            self.profile,
            self.scenario,
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
            "  timings: cloud-init start to pipeline start {}, pipeline end to shutdown {}, deadline to shutdown {}, boot {}",
            seconds(t.cloud_init_to_pipeline),
            seconds(t.pipeline_end_to_shutdown),
            seconds(t.deadline_to_shutdown),
            seconds(Some(t.total))
        )?;
        if let Some(kept) = &self.kept {
            write!(f, "\n  files kept in {}", kept.display())?;
        }
        Ok(())
    }
}

/// The EFS mounts of a compiled profile: (fs id, sub-path, mount point).
fn mounts(compiled: &Compiled) -> Vec<(String, String, String)> {
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

/// Where, in the host folder that plays the EFS, an instance path lands.
fn on_efs(efs: &Path, mounts: &[(String, String, String)], path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|(_, _, at)| {
            path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')))
        })
        .max_by_key(|(_, _, at)| at.len())
        .map(|(fs, sub, at)| {
            let rest = path[at.len()..].trim_start_matches('/');
            efs.join(fs).join(sub.trim_start_matches('/')).join(rest)
        })
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    }
    fs::write(path, text).map_err(|e| Error::io(path, "write", e))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

#[cfg(unix)]
fn open_to_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o1777));
}

/// Options of a smoke run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep the boot's files (EFS folder, records, logs) in this directory.
    pub keep: Option<PathBuf>,
    /// Give up on a boot after this long.
    pub deadline: Option<Duration>,
}

/// The host folders a boot shares with its container.
struct Folders {
    root: PathBuf,
    /// Plays the EFS: `efs/FS_ID/PATH`.
    efs: PathBuf,
    /// What the stand-ins were asked, with times.
    records: PathBuf,
    /// What PID 1 collects at the end: logs, cloud-init's status, local state.
    out: PathBuf,
    /// pip's only index: empty, so no requirement comes from the network.
    wheels: PathBuf,
}

/// Boots profile `name` under scenario `scenario` and checks what happened.
pub fn run(
    library: &Library,
    name: &str,
    scenario: &Scenario,
    sets: &[Override],
    options: &Options,
) -> Result<Report> {
    let image = format!("{IMAGE}:{}", image_tag());
    if !image_exists(&image)? {
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
                fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, "clear", e))?;
            }
            dir
        }
        None => tmp.path().to_path_buf(),
    };
    let mounts = mounts(&compiled);
    let folders = prepare(root, &compiled, scenario, &mounts)?;
    let deadline = options.deadline.unwrap_or(Duration::from_secs(
        job.timeout.seconds() + job.kill_after.seconds() + 300,
    ));
    let (finished, total, container) =
        boot(&image, &compiled, scenario, &folders, &mounts, deadline)?;

    let mut report = Report {
        profile: compiled.profile.name.clone(),
        scenario: scenario.name.to_string(),
        image,
        payload_sha256: compiled.payload.sha256(),
        payload_bytes: compiled.payload.bytes.len(),
        checks: vec![Check {
            name: "boot finished".to_string(),
            passed: finished,
            detail: if finished {
                format!("the container stopped after {total:.1}s")
            } else {
                format!(
                    "still running after {:.0}s: stopped and removed",
                    deadline.as_secs_f64()
                )
            },
        }],
        timings: Timings {
            total,
            ..Timings::default()
        },
        status: None,
        kept: options.keep.as_ref().map(|_| folders.root.clone()),
        container,
    };
    inspect(&compiled, scenario, &folders, &mounts, &mut report);
    Ok(report)
}

/// Lays out the folders: the EFS as the job expects it (the pipeline
/// stand-in, the requirements), and the seed and switches for the boot.
fn prepare(
    root: PathBuf,
    compiled: &Compiled,
    scenario: &Scenario,
    mounts: &[(String, String, String)],
) -> Result<Folders> {
    let folders = Folders {
        efs: root.join("efs"),
        records: root.join("records"),
        out: root.join("out"),
        wheels: root.join("wheels"),
        root,
    };
    // Written by root in the container, read and written by the job's user.
    for dir in [
        &folders.efs,
        &folders.records,
        &folders.out,
        &folders.wheels,
    ] {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
        open_to_all(dir);
    }
    for (fs_id, sub, _) in mounts {
        let dir = folders.efs.join(fs_id).join(sub.trim_start_matches('/'));
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create directory", e))?;
        open_to_all(&dir);
    }
    if let Some(script) = compiled.param("pipeline", "script").and_then(Value::as_str)
        && let Some(host) = on_efs(&folders.efs, mounts, script)
    {
        write(&host, PIPELINE)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = fs::set_permissions(&host, fs::Permissions::from_mode(0o755));
        }
        write(&host.with_file_name("smoke-mode"), scenario.pipeline)?;
    }
    if let (Some(file), Some(text)) = (
        compiled
            .param("requirements", "file")
            .and_then(Value::as_str),
        scenario.requirements,
    ) && let Some(host) = on_efs(&folders.efs, mounts, file)
    {
        write(&host, text)?;
    }
    Ok(folders)
}

/// Starts the container, waits (at most `deadline`) for it to stop, and
/// removes it. Returns whether it stopped by itself, how long it ran, and
/// its id.
fn boot(
    image: &str,
    compiled: &Compiled,
    scenario: &Scenario,
    folders: &Folders,
    mounts: &[(String, String, String)],
    deadline: Duration,
) -> Result<(bool, f64, String)> {
    let instance = &compiled.profile.profile.instance;
    let meta_data = format!(
        "instance-id: i-smoke{}\nlocal-hostname: bootforge-smoke\ninstance-type: {}\n",
        &compiled.payload.sha256()[..10],
        instance.types.first().cloned().unwrap_or_default()
    );
    let switches = format!(
        "SMOKE_SCENARIO={}\nSMOKE_NO_EFS={}\nSMOKE_NO_GPU={}\nPIP_NO_INDEX=1\nPIP_FIND_LINKS=/smoke/wheels\nPIP_BREAK_SYSTEM_PACKAGES=1\n",
        scenario.name,
        u8::from(scenario.no_efs),
        u8::from(scenario.no_gpu)
    );
    // Kept beside the rest for whoever debugs the boot.
    write(&folders.root.join("seed/meta-data"), &meta_data)?;
    write(&folders.root.join("scenario.env"), &switches)?;
    let user_data = folders.root.join("seed/user-data");
    fs::write(&user_data, &compiled.payload.bytes)
        .map_err(|e| Error::io(&user_data, "write", e))?;

    let bind = |host: &Path, at: &str| Mount::bind_mount(host.display().to_string(), at);
    // Labels this boot's container, to remove it even when starting it fails.
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let (repo, tag) = image.split_once(':').expect("the image name has a tag");
    let mut request = GenericImage::new(repo, tag)
        .with_cap_add("SYS_ADMIN")
        .with_label("org.bootforge.smoke", scenario.name)
        .with_label("org.bootforge.smoke.run", &run)
        .with_network("none")
        .with_mount(bind(&folders.efs, "/smoke/efs"))
        .with_mount(bind(&folders.records, "/smoke/records"))
        .with_mount(bind(&folders.out, "/smoke/out"))
        .with_mount(bind(&folders.wheels, "/smoke/wheels"))
        .with_copy_to(
            "/var/lib/cloud/seed/nocloud/user-data",
            compiled.payload.bytes.clone(),
        )
        .with_copy_to(
            "/var/lib/cloud/seed/nocloud/meta-data",
            meta_data.into_bytes(),
        )
        .with_copy_to("/smoke/scenario.env", switches.into_bytes());
    for (fs_id, _, _) in mounts {
        let dns = format!("{fs_id}.efs.{}.amazonaws.com", instance.region);
        request = request.with_host(dns, Host::Addr([127, 0, 0, 1].into()));
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
            "the Docker engine must be running and allow containers with CAP_SYS_ADMIN (for the mounts)",
        )
    })?;
    let mut finished = false;
    while started.elapsed() < deadline {
        match container.is_running() {
            Ok(true) => std::thread::sleep(Duration::from_millis(250)),
            _ => {
                finished = true;
                break;
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    let id = container.id().to_string();
    // Dropping the container removes it, also when the boot overran.
    drop(container);
    Ok((finished, total, id))
}

/// Reads what the boot left and checks it against the scenario.
fn inspect(
    compiled: &Compiled,
    scenario: &Scenario,
    folders: &Folders,
    mounts: &[(String, String, String)],
    report: &mut Report,
) {
    let job = &compiled.profile.profile.job;
    let (records, out) = (&folders.records, &folders.out);
    let mut check = |name: &str, passed: bool, detail: String| {
        report.checks.push(Check {
            name: name.to_string(),
            passed,
            detail,
        })
    };
    let shutdowns = read(&records.join("shutdown.log"));
    let delay_minutes =
        (job.timeout.seconds() + job.grace.seconds() + extra_minutes(compiled) * 60).div_ceil(60);
    let armed = format!("shutdown -P +{delay_minutes} bootforge dead-man switch");
    check(
        "dead-man's switch armed",
        shutdowns
            .lines()
            .any(|l| l.split_once(' ').is_some_and(|(_, call)| call == armed)),
        format!("expected `{armed}`"),
    );

    let console = read(&out.join("cloud-init-output.log"));
    let printed = console
        .lines()
        .find_map(|l| l.strip_prefix("bootforge-status: "))
        .and_then(|s| serde_json::from_str::<Json>(s).ok());
    check(
        "job runner ran",
        console.contains(&format!("bootforge[{}] job {} (profile", job.id, job.id))
            && printed.is_some(),
        "its start and its status are on the console".to_string(),
    );

    let job_dir = on_efs(&folders.efs, mounts, &format!("{}/{}", job.log_dir, job.id));
    let local = out.join("state/jobs").join(&job.id);
    let status_file = if scenario.no_efs {
        Some(local.clone())
    } else {
        job_dir.clone()
    };
    let status: Option<Json> = status_file
        .map(|d| read(&d.join("status.json")))
        .and_then(|t| serde_json::from_str(&t).ok());
    let (outcome, code) = status.as_ref().map_or((None, None), |s| {
        (
            s["outcome"].as_str().map(str::to_string),
            s["exit_code"].as_i64(),
        )
    });
    check(
        "status.json",
        outcome.as_deref() == Some(scenario.outcome)
            && code == Some(scenario.exit_code)
            && printed.as_ref() == status.as_ref(),
        format!(
            "outcome {} exit code {} (expected {} {}), same on the console",
            outcome.as_deref().unwrap_or("-"),
            code.map_or("-".to_string(), |c| c.to_string()),
            scenario.outcome,
            scenario.exit_code
        ),
    );
    report.status = status.clone();

    let log = job_dir.as_ref().map(|d| d.join("job.log"));
    let log_there = log.as_ref().is_some_and(|l| l.is_file());
    check(
        "log on the EFS",
        log_there != scenario.no_efs,
        if scenario.no_efs {
            "no EFS: nothing was written where it should be; the status is on the console and the local disk".to_string()
        } else {
            log.as_ref()
                .map_or("-".to_string(), |l| l.display().to_string())
        },
    );

    let immediate: Vec<&str> = shutdowns.lines().filter(|l| l.contains(" now")).collect();
    let trap = format!(
        "shutdown -h now bootforge: job {} {}",
        job.id, scenario.outcome
    );
    let trap_calls = immediate.iter().filter(|l| l.ends_with(&trap)).count();
    check(
        "trap shut down first, once",
        immediate.first().is_some_and(|l| l.ends_with(&trap)) && trap_calls == 1,
        format!(
            "{trap_calls} call(s) of `{trap}`; then {} other power-off call(s)",
            immediate.len().saturating_sub(1)
        ),
    );
    check(
        "power_state backstop",
        immediate.iter().any(|l| l.contains("shutdown -P now")),
        "cloud-init powered off after its final stage".to_string(),
    );

    // A job that does not succeed makes the runner, so runcmd, exit non-zero:
    // that one failure is expected, and nothing else.
    let status_long = read(&out.join("status-long.txt"));
    let cloud_log = read(&out.join("cloud-init.log"));
    let runcmd_failed = "Runparts: 1 failures (runcmd)";
    let expected = if scenario.outcome == "succeeded" {
        0
    } else {
        cloud_log
            .matches(&format!("RuntimeError: {runcmd_failed}"))
            .count()
    };
    let unexpected = cloud_log
        .matches("Traceback (most recent call last)")
        .count()
        .saturating_sub(expected);
    let state = status_long
        .lines()
        .next()
        .unwrap_or("no `cloud-init status --long`");
    let clean = state == "status: done"
        || (scenario.outcome != "succeeded"
            && state == "status: error"
            && status_long
                .lines()
                .skip_while(|l| *l != "detail:")
                .skip(1)
                .filter(|l| !l.starts_with("exit code"))
                .all(|l| l.contains(runcmd_failed)));
    check(
        "cloud-init clean",
        clean && unexpected == 0,
        format!(
            "{state}{}; {unexpected} unexpected traceback(s) in cloud-init.log",
            if state == "status: error" {
                " (the job's runcmd failure only)"
            } else {
                ""
            }
        ),
    );

    let timeline = read(&records.join("timeline"));
    let at = |what: &str| {
        timeline
            .lines()
            .filter_map(|l| l.strip_prefix(what)?.trim().parse::<f64>().ok())
            .next()
    };
    let shutdown_at = immediate
        .iter()
        .find(|l| l.ends_with(&trap))
        .and_then(|l| l.split(' ').next()?.parse::<f64>().ok());
    let boot_epoch = read(&out.join("state/boot-epoch"))
        .trim()
        .parse::<f64>()
        .ok();
    report.timings.cloud_init_to_pipeline = at("cloud-init-start ")
        .zip(at("pipeline-start "))
        .map(|(a, b)| b - a);
    report.timings.pipeline_end_to_shutdown =
        at("pipeline-end ").zip(shutdown_at).map(|(a, b)| b - a);
    if scenario.outcome == "timed_out" {
        report.timings.deadline_to_shutdown = boot_epoch
            .zip(shutdown_at)
            .map(|(boot, s)| s - (boot + job.timeout.seconds() as f64));
    }
}

fn extra_minutes(compiled: &Compiled) -> u64 {
    compiled
        .param("deadman", "extra_minutes")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_paths_land_in_the_efs_folder() {
        let mounts = vec![
            (
                "fs-1".to_string(),
                "/".to_string(),
                "/home/u/rec".to_string(),
            ),
            (
                "fs-1".to_string(),
                "/app".to_string(),
                "/home/u/app".to_string(),
            ),
        ];
        let efs = Path::new("/e");
        assert_eq!(
            on_efs(efs, &mounts, "/home/u/app/run.sh"),
            Some(PathBuf::from("/e/fs-1/app/run.sh"))
        );
        assert_eq!(
            on_efs(efs, &mounts, "/home/u/rec/jobs/1"),
            Some(PathBuf::from("/e/fs-1/jobs/1"))
        );
        assert_eq!(on_efs(efs, &mounts, "/home/u/recx"), None);
    }

    #[test]
    fn the_tag_follows_the_recipe() {
        assert_eq!(image_tag().len(), 12);
        assert_eq!(image_tag(), image_tag());
    }
}
