//! The smoke image: a Debian root booting systemd with real cloud-init,
//! built from the recipe in `recipe/` without any registry, and tagged with
//! a hash of that recipe so that it is rebuilt only when the recipe changes.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use sha2::Digest as _;

use super::environment;
use crate::diagnostics::{Error, Result};
use crate::progress::Event;

/// The image recipe: every file that goes into the image, by name.
const RECIPE: &[(&str, &str)] = &[
    ("build-image.sh", include_str!("recipe/build-image.sh")),
    ("99-smoke.cfg", include_str!("recipe/99-smoke.cfg")),
    ("record-shutdown", include_str!("recipe/record-shutdown")),
    ("mount-helper", include_str!("recipe/mount-helper")),
    ("smoke-efs", include_str!("recipe/smoke-efs")),
    ("nvidia-smi", include_str!("recipe/nvidia-smi")),
    ("smoke-imds", include_str!("recipe/smoke-imds")),
    ("smoke-ordering", include_str!("recipe/smoke-ordering")),
    (
        "requirements-cv.txt",
        include_str!("recipe/requirements-cv.txt"),
    ),
    ("uv.txt", include_str!("recipe/uv.txt")),
    (
        "al2023-cloud-init-local.service",
        include_str!("recipe/al2023/cloud-init-local.service"),
    ),
    (
        "al2023-cloud-init.service",
        include_str!("recipe/al2023/cloud-init.service"),
    ),
    (
        "al2023-cloud-config.service",
        include_str!("recipe/al2023/cloud-config.service"),
    ),
    (
        "al2023-cloud-final.service",
        include_str!("recipe/al2023/cloud-final.service"),
    ),
];

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

/// The image the current recipe builds, `bootforge-smoke:TAG`.
pub fn image() -> String {
    format!("{IMAGE}:{}", image_tag())
}

/// Runs the docker command line (image import and inspection, which the
/// container library does not do).
pub(super) fn docker(args: &[&str]) -> Result<std::process::Output> {
    Command::new("docker").args(args).output().map_err(|e| {
        environment(
            format!("cannot run the docker command: {e}"),
            "install Docker and make sure `docker` is on PATH",
        )
    })
}

pub(super) fn image_exists(reference: &str) -> Result<bool> {
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
pub fn build_image(force: bool, on: &mut dyn FnMut(Event)) -> Result<ImageBuild> {
    let image = image();
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
    on(Event::Phase(format!("building {image}")));
    // The recipe's output, both streams in order, line by line: details of
    // the phase, and the end of it in the error when the build fails.
    let (reader, writer) =
        std::io::pipe().map_err(|e| environment(format!("cannot make a pipe: {e}"), "retry"))?;
    let mut child = {
        let mut command = Command::new("bash");
        command
            .arg(files.join("build-image.sh"))
            .arg(work.path())
            .arg(&files)
            .arg(&image)
            .stdin(Stdio::null())
            .stdout(
                writer
                    .try_clone()
                    .map_err(|e| environment(format!("cannot make a pipe: {e}"), "retry"))?,
            )
            .stderr(writer);
        command
            .spawn()
            .map_err(|e| environment(format!("cannot run bash: {e}"), "install bash"))?
        // `command`, and with it the pipe's writing ends, is dropped here:
        // the reader sees the end when the recipe ends.
    };
    let mut tail = std::collections::VecDeque::new();
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        on(Event::Detail(line));
    }
    let status = child
        .wait()
        .map_err(|e| environment(format!("cannot wait for bash: {e}"), "retry"))?;
    if !status.success() {
        return Err(environment(
            format!(
                "building the smoke image {image} failed ({status}); its last lines:\n  {}",
                Vec::from(tail).join("\n  ")
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_recipe() {
        assert_eq!(image_tag().len(), 12);
        assert_eq!(image_tag(), image_tag());
        assert!(image().starts_with("bootforge-smoke:"));
    }
}
