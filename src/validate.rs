//! `validate`: every check that can be made before launch, as diagnostics
//! that point at the text to fix.

use std::fmt;

use regex::Regex;
use serde::Serialize;
use serde_yaml_ng::Value;

use crate::aws_names;
use crate::catalog;
use crate::compile::{Compiled, compile};
use crate::error::{Error, Location, did_you_mean};
use crate::library::Library;
use crate::payload::USER_DATA_LIMIT;
use crate::profile::{LoadedProfile, Override};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem, with where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A short stable name for the kind of problem.
    pub code: &'static str,
    pub message: String,
    /// The logical path of the value (`job.timeout`), when there is one.
    pub path: Option<String>,
    pub file: Option<String>,
    pub location: Option<Location>,
    pub help: Option<String>,
}

impl From<&Error> for Diagnostic {
    fn from(e: &Error) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code: e.code(),
            message: e.message(),
            path: match e {
                Error::Profile { path, .. } => Some(path.clone()),
                Error::Param { snippet, param, .. } => Some(format!("snippets.{snippet}.{param}")),
                Error::UnknownSnippet { name, .. } => Some(format!("snippets.{name}")),
                Error::Requires { snippet, .. }
                | Error::Order { snippet, .. }
                | Error::Conflicts { snippet, .. } => Some(format!("snippets.{snippet}")),
                _ => None,
            },
            file: e.file().map(str::to_string),
            location: e.location(),
            help: e.help(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]: {}", self.severity, self.code, self.message)?;
        if let Some(location) = &self.location {
            write!(f, "\n{location}")?;
        } else if let Some(file) = &self.file {
            write!(f, "\n  --> {file}")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

impl Serialize for Diagnostic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": self.location.as_ref().map(|l| l.file.clone()).or_else(|| self.file.clone()),
            "line": self.location.as_ref().map(|l| l.line),
            "column": self.location.as_ref().map(|l| l.column),
            "path": self.path,
            "help": self.help,
        })
        .serialize(s)
    }
}

/// Compiles profile `name` and checks everything that can be known before
/// launch. An empty list means all is well.
pub fn validate(library: &Library, name: &str, overrides: &[Override]) -> Vec<Diagnostic> {
    match compile(library, name, overrides) {
        Err(e) => vec![Diagnostic::from(&e)],
        Ok(compiled) => {
            let mut checks = Checks {
                p: &compiled.profile,
                found: Vec::new(),
            };
            checks.identifiers();
            checks.catalog();
            checks.times(&compiled);
            checks.paths(&compiled);
            checks.secrets();
            checks.size(&compiled);
            checks.scripts(&compiled);
            checks.found.sort_by_key(|d| std::cmp::Reverse(d.severity));
            checks.found
        }
    }
}

struct Checks<'a> {
    p: &'a LoadedProfile,
    found: Vec<Diagnostic>,
}

fn re(pattern: &str) -> Regex {
    crate::patterns::compiled(pattern).expect("the patterns below are valid")
}

fn int(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

impl Checks<'_> {
    fn report(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: &str,
        message: String,
        help: Option<&str>,
    ) {
        let origin = self.p.origin(path);
        let (file, location) = match &origin {
            crate::profile::Origin::Set(arg) => (
                Some(format!("--set {arg}")),
                Some(crate::error::set_location(arg, "")),
            ),
            o => (Some(self.p.file_of(o).to_string()), self.p.locate(path)),
        };
        self.found.push(Diagnostic {
            severity,
            code,
            message,
            path: Some(path.to_string()),
            file,
            location,
            help: help.map(str::to_string),
        });
    }

    fn error(&mut self, code: &'static str, path: &str, message: String, help: Option<&str>) {
        self.report(Severity::Error, code, path, message, help);
    }

    fn warn(&mut self, code: &'static str, path: &str, message: String, help: Option<&str>) {
        self.report(Severity::Warning, code, path, message, help);
    }

    fn identifiers(&mut self) {
        let i = &self.p.profile.instance;
        let region = i.region.clone();
        if !aws_names::REGIONS.contains(&region.as_str()) {
            let help = match did_you_mean(&region, aws_names::REGIONS.iter().copied()) {
                Some(r) => format!(
                    "did you mean `{r}`? (the regions are the AWS SDK's, every partition's)"
                ),
                None => {
                    "regions look like us-east-2 (the regions are the AWS SDK's, every partition's)"
                        .to_string()
                }
            };
            self.error(
                "unknown-region",
                "instance.region",
                format!("`{region}` is not an AWS region"),
                Some(&help),
            );
        }
        if !re(aws_names::AMI).is_match(&i.ami) {
            let ami = i.ami.clone();
            self.error(
                "bad-id",
                "instance.ami",
                format!("`{ami}` is not an AMI id"),
                Some("AMI ids look like ami-0d67eb9a9a933bd88"),
            );
        }
        for (n, subnet) in i.subnets.clone().iter().enumerate() {
            if !re(aws_names::SUBNET).is_match(subnet) {
                self.error(
                    "bad-id",
                    &format!("instance.subnets[{n}]"),
                    format!("`{subnet}` is not a subnet id"),
                    Some("subnet ids look like subnet-098dc7573fb6bf8bd"),
                );
            }
        }
        for (n, sg) in i.security_groups.clone().iter().enumerate() {
            if !re(aws_names::SECURITY_GROUP).is_match(sg) {
                self.error(
                    "bad-id",
                    &format!("instance.security_groups[{n}]"),
                    format!("`{sg}` is not a security group id"),
                    Some("security group ids look like sg-0906d54ac3d704022 (give ids, not names)"),
                );
            }
        }
        if let Some(key) = i.key_pair.clone()
            && (key.is_empty()
                || key.len() > 255
                || !key.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        {
            self.error(
                "bad-id",
                "instance.key_pair",
                format!("{key:?} is not a key pair name"),
                Some("a key pair name is 1 to 255 printable ASCII characters"),
            );
        }
        match (&i.instance_profile, &i.instance_role) {
            (Some(profile), None) => self.error(
                "instance-role-missing",
                "instance.instance_profile",
                format!("the instance profile `{profile}` is given without the role inside it"),
                Some("name the role too (instance.instance_role: its name or ARN): `iam-policy` scopes iam:PassRole to the role, whose name is often not the profile's"),
            ),
            (None, Some(_)) => self.error(
                "instance-role-missing",
                "instance.instance_role",
                "a role is given without the instance profile that carries it".to_string(),
                Some("EC2 is given an instance profile, never a role: set instance.instance_profile"),
            ),
            (Some(_), Some(role))
                if role.len() > 2048
                    || !re(r"^(arn:aws[a-z-]*:iam::[0-9]{12}:role/)?[A-Za-z0-9_+=,.@/-]+$")
                        .is_match(role) =>
            {
                self.error(
                "bad-id",
                "instance.instance_role",
                format!("`{role}` is neither a role name nor a role ARN"),
                Some("a role name is letters, digits and +=,.@_-; an ARN looks like arn:aws:iam::222634388391:role/NAME"),
            )
            }
            _ => {}
        }
        if let Some(account) = i.account.clone()
            && !re(aws_names::ACCOUNT).is_match(&account)
        {
            self.error(
                "bad-id",
                "instance.account",
                format!("`{account}` is not an AWS account id"),
                Some("an account id is 12 digits"),
            );
        }
        // Against an unknown region, every zone would look wrong: the region
        // has its own error.
        if let Some(az) = i.availability_zone.clone()
            && aws_names::REGIONS.contains(&region.as_str())
            && !(az.len() == region.len() + 1
                && az.starts_with(&region)
                && az.ends_with(|c: char| c.is_ascii_lowercase()))
        {
            self.error(
                "region-mismatch",
                "instance.availability_zone",
                format!("`{az}` is not an availability zone of region `{region}`"),
                Some("an availability zone is its region and a letter, like us-east-2b"),
            );
        }
        for (n, t) in i.types.clone().iter().enumerate() {
            if !re(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$").is_match(t) {
                self.error(
                    "bad-id",
                    &format!("instance.types[{n}]"),
                    format!("`{t}` is not an instance type"),
                    Some("instance types look like g6e.xlarge"),
                );
            }
        }
        for (key, value) in i.tags.clone() {
            let path = format!("instance.tags.{key}");
            if key.starts_with("aws:") || key.starts_with("bootforge:") || key == "Name" {
                self.error(
                    "reserved-tag",
                    &path,
                    format!("tag `{key}` is set by AWS or by bootforge"),
                    Some("choose another key; bootforge sets Name and the bootforge:* tags itself"),
                );
            } else if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
                self.error(
                    "bad-tag",
                    &path,
                    "tag keys are 1 to 128 characters, values at most 256".to_string(),
                    None,
                );
            }
        }
    }

    fn catalog(&mut self) {
        let i = self.p.profile.instance.clone();
        let family = catalog::ami_family(&i.ami);
        for (n, name) in i.types.iter().enumerate() {
            let path = format!("instance.types[{n}]");
            if let Some(known) = aws_names::instance_types()
                && !known.contains(&name.as_str())
            {
                let help = match did_you_mean(name, known.iter().copied()) {
                    Some(t) => format!("did you mean `{t}`? (the types are the AWS SDK's)"),
                    None => "instance types look like g6e.xlarge (the types are the AWS SDK's)"
                        .to_string(),
                };
                self.error(
                    "unknown-instance-type",
                    &path,
                    format!("`{name}` is not an EC2 instance type"),
                    Some(&help),
                );
                continue;
            }
            let Some(t) = catalog::lookup(name) else {
                self.warn("unknown-type", &path, format!("`{name}` is not in bootforge's catalog: its GPU and price cannot be checked"), Some("the catalog holds the G4dn, G5, G6, G6e, P3, P4d and P5 families; check the type's GPU and price yourself"));
                continue;
            };
            if let Some(gpu) = &i.gpu
                && !t.gpu.eq_ignore_ascii_case(gpu)
            {
                let with = catalog::with_gpu(gpu);
                let help = match with.first() {
                    Some(w) => format!(
                        "the {gpu} is on {} (and {} more); or expect `gpu: {}`",
                        w.name,
                        with.len() - 1,
                        t.gpu
                    ),
                    None => format!("known GPU models: {}", catalog::gpu_models().join(", ")),
                };
                self.error("gpu-mismatch", "instance.gpu", format!("`{name}` carries an NVIDIA {} {} GB, not the {gpu} that `instance.gpu` expects", t.gpu, t.gpu_memory_gib), Some(&help));
            }
            if let Some(f) = family {
                let fam = name.split('.').next().unwrap_or_default();
                if !f.supports.contains(&fam) {
                    self.warn(
                        "ami-family",
                        &path,
                        format!(
                            "the AMI {} ({}) does not support the {fam} family",
                            i.ami, f.description
                        ),
                        Some(&format!("it supports {}", f.supports.join(", "))),
                    );
                }
            }
            if let Some(ceiling) = i.max_cost_usd {
                let job = &self.p.profile.job;
                let seconds = job.timeout.seconds() + job.grace.seconds();
                let hours = seconds as f64 / 3600.0;
                let worst = crate::catalog::job_cost(t.price_per_hour, seconds);
                if worst > ceiling {
                    self.error(
                        "over-budget",
                        "instance.max_cost_usd",
                        format!("a job on {name} may cost ${worst:.2} (${:.4}/h × {hours:.2} h of timeout and grace), over the ceiling of ${ceiling:.2}", t.price_per_hour),
                        Some("raise max_cost_usd, shorten job.timeout, or choose a cheaper type"),
                    );
                }
            }
        }
    }

    fn times(&mut self, compiled: &Compiled) {
        let job = self.p.profile.job.clone();
        let (timeout, grace, kill) = (
            job.timeout.seconds(),
            job.grace.seconds(),
            job.kill_after.seconds(),
        );
        if timeout > 48 * 3600 {
            self.error(
                "timeout-bounds",
                "job.timeout",
                format!(
                    "a budget of {} is past the 48 h a one-shot job may take",
                    job.timeout
                ),
                Some("split the job, or raise this check's bound in bootforge if you mean it"),
            );
        } else if timeout < 60 {
            self.warn(
                "timeout-bounds",
                "job.timeout",
                format!(
                    "a budget of {} leaves no time to boot and mount",
                    job.timeout
                ),
                None,
            );
        }
        if grace < 60 {
            self.error("grace-bounds", "job.grace", format!("a grace of {} leaves the finalizer no time to write the status before the dead-man's switch", job.grace), Some("give it at least 1m; 5m to 10m is usual"));
        } else if grace > 2 * 3600 {
            self.warn(
                "grace-bounds",
                "job.grace",
                format!(
                    "a grace of {} keeps a finished-or-stuck instance paid for long",
                    job.grace
                ),
                None,
            );
        }
        // The finalizer starts at most kill_after past the timeout and may
        // take its whole bound; the dead-man's switch must not cut it short.
        let finalize = compiled
            .param("shutdown-trap", "finalize_seconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        if kill + finalize > grace {
            self.error("grace-bounds", "job.kill_after", format!("SIGKILL {} after the timeout and {finalize}s for the finalizer do not fit in the {} grace", job.kill_after, job.grace), Some(&format!("make the grace at least kill_after + {finalize}s (the finalizer's bound, snippets.shutdown-trap.finalize_seconds)")));
        }
        if compiled.snippets.iter().all(|s| s.name != "deadman") {
            self.warn("no-deadman", "snippets", "the profile has no dead-man's switch: nothing powers the instance off if the runner never starts".to_string(), Some("add `deadman: {}` first under `snippets:`"));
        }
        let mounts = compiled
            .param("efs-mount", "mounts")
            .and_then(Value::as_sequence)
            .map_or(0, Vec::len) as u64;
        let setup = mounts * int(compiled.param("efs-mount", "dns_wait_seconds"))
            + int(compiled.param("requirements", "timeout_minutes")) * 60
            + int(compiled.param("gpu-ready", "wait_seconds"));
        if setup >= timeout {
            self.warn(
                "setup-budget",
                "job.timeout",
                format!(
                    "the setup phases may take up to {setup}s, the whole {}s budget",
                    timeout
                ),
                Some("lengthen job.timeout or shorten the setup bounds"),
            );
        }
    }

    fn paths(&mut self, compiled: &Compiled) {
        let mounts: Vec<String> = compiled
            .param("efs-mount", "mounts")
            .and_then(Value::as_sequence)
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["mount_point"].as_str())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let under = crate::paths::is_under;
        for (a, ma) in mounts.iter().enumerate() {
            for (b, mb) in mounts.iter().enumerate().skip(a + 1) {
                if ma == mb {
                    self.error(
                        "mount-overlap",
                        &format!("snippets.efs-mount.mounts[{b}].mount_point"),
                        format!("{mb} is mounted twice; the second mount hides the first"),
                        None,
                    );
                } else if under(ma, mb) {
                    self.error(
                        "mount-overlap",
                        &format!("snippets.efs-mount.mounts[{b}].mount_point"),
                        format!("mounting {mb} after {ma} hides it"),
                        Some("list the outer mount point first"),
                    );
                }
            }
        }
        let written: Vec<&str> = compiled.files.iter().map(|f| f.path.as_str()).collect();
        let provided =
            |path: &str| mounts.iter().any(|m| under(path, m)) || written.contains(&path);
        for (snippet, p) in [("pipeline", "script"), ("requirements", "file")] {
            if let Some(path) = compiled.param(snippet, p).and_then(Value::as_str)
                && !provided(path)
            {
                let (code, severity) = if snippet == "pipeline" {
                    ("path-not-provided", Severity::Error)
                } else {
                    ("path-not-provided", Severity::Warning)
                };
                self.report(
                    severity,
                    code,
                    &format!("snippets.{snippet}.{p}"),
                    format!("{path} is on no mounted file system and not written by the payload: it will not be there at boot"),
                    Some(&if mounts.is_empty() {
                        "mount the file system that holds it with the efs-mount snippet".to_string()
                    } else {
                        format!("the mount points are {}", mounts.join(", "))
                    }),
                );
            }
        }
        if let Some(cache) = compiled
            .param("requirements", "cache_dir")
            .and_then(Value::as_str)
            && !mounts.iter().any(|m| under(cache, m))
        {
            self.warn("cache-not-kept", "snippets.requirements.cache_dir", format!("{cache} is on no mounted file system: the cached environments are lost with the instance and no later job finds them"), Some("put the cache under an EFS mount point"));
        }
        let log_dir = self.p.profile.job.log_dir.clone();
        if !mounts.iter().any(|m| under(&log_dir, m)) {
            self.warn("logs-not-kept", "job.log_dir", format!("{log_dir} is on no mounted file system: logs and status are lost when the instance terminates"), Some("put job.log_dir under an EFS mount point"));
        }
    }

    fn secrets(&mut self) {
        let value = serde_yaml_ng::to_value(&self.p.profile).unwrap_or(Value::Null);
        let mut leaves = Vec::new();
        walk(&value, "", &mut leaves);
        let patterns = [
            (re(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
            (re(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
            (
                re(r"\b(ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,}"),
                "a GitHub token",
            ),
            (re(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
            (re(r"\bhf_[A-Za-z0-9]{30,}"), "a Hugging Face token"),
            (re(r"\bsk-[A-Za-z0-9_-]{20,}"), "an API secret key"),
            (
                re(
                    r"(?i)\b(aws_secret_access_key|password|passwd|secret|token|api_?key)\s*[=:]\s*\S+",
                ),
                "a credential assignment",
            ),
        ];
        let secret_name =
            re(r"(?i)(secret|password|passwd|token|api_?key|private_?key|credential)");
        let aws_secret = re(r"^[A-Za-z0-9/+]{40}$");
        for (path, text) in leaves {
            let name = path.rsplit('.').next().unwrap_or_default();
            let hit = patterns
                .iter()
                .find(|(re, _)| re.is_match(&text))
                .map(|(_, what)| *what)
                .or_else(|| {
                    (secret_name.is_match(name) && !text.is_empty())
                        .then_some("a value named like a secret")
                })
                .or_else(|| {
                    aws_secret
                        .is_match(&text)
                        .then_some("what looks like an AWS secret access key")
                });
            if let Some(what) = hit {
                self.error(
                    "secret",
                    &path,
                    format!("`{path}` holds {what}; user-data is readable by any process on the instance and in the EC2 console"),
                    Some("keep secrets in AWS Secrets Manager or SSM Parameter Store and let the instance's role read them at run time"),
                );
            }
        }
    }

    fn size(&mut self, compiled: &Compiled) {
        let raw = compiled.payload.raw_len;
        if raw > USER_DATA_LIMIT * 3 / 4 && !compiled.payload.gzip {
            self.warn(
                "size-budget",
                "snippets",
                format!(
                    "the payload is {raw} bytes, {}% of EC2's {USER_DATA_LIMIT}-byte limit",
                    raw * 100 / USER_DATA_LIMIT
                ),
                Some("little room is left: keep large content on the EFS"),
            );
        }
        if compiled.payload.gzip
            && self.p.profile.output.compression == crate::profile::Compression::Auto
        {
            self.warn("size-budget", "snippets", format!("the payload is {raw} bytes raw and had to be gzipped to fit"), Some("set `output.compression: gzip` to make that explicit, or move content to the EFS"));
        }
    }
}

impl Checks<'_> {
    /// Every generated bash file must parse (`bash -n`); a failure points at
    /// the snippet that wrote the line and the profile values it was given.
    fn scripts(&mut self, compiled: &Compiled) {
        for file in &compiled.files {
            if !file.content.starts_with("#!/bin/bash") {
                continue;
            }
            let Some(errors) = bash_syntax(&file.content) else {
                continue;
            };
            for (line, what) in errors {
                let (snippet, template, at) = match file.section_at(line) {
                    Some((s, at)) => (s.snippet.clone(), s.template.clone(), at),
                    None => ("?".to_string(), "?".to_string(), line),
                };
                let fed: Vec<String> = compiled
                    .snippets
                    .iter()
                    .filter(|s| s.name == snippet)
                    .flat_map(|s| s.params.iter())
                    .filter(|p| p.origin != crate::profile::Origin::Default)
                    .map(|p| format!("`{}` ({})", p.name, p.origin))
                    .collect();
                self.found.push(Diagnostic {
                    severity: Severity::Error,
                    code: "bad-script",
                    message: format!(
                        "{} does not parse at its line {line}: {what}; that line is line {at} of what snippet `{snippet}` renders from {template}",
                        file.path
                    ),
                    path: Some(format!("snippets.{snippet}")),
                    file: Some(template),
                    location: None,
                    help: Some(if fed.is_empty() {
                        "the snippet's template is wrong: fix it".to_string()
                    } else {
                        format!("the snippet was given {}; a value printed with `| safe` must be valid shell", fed.join(", "))
                    }),
                });
            }
        }
    }
}

/// `bash -n`'s complaints about `script`, as (line, message); `None` when
/// bash is not there to ask.
fn bash_syntax(script: &str) -> Option<Vec<(usize, String)>> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(script.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let found = text
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("line ")?.1;
            let (n, what) = rest.split_once(": ")?;
            Some((n.parse().ok()?, what.to_string()))
        })
        .collect();
    Some(found)
}

/// Every string leaf of `value` with its dotted path.
fn walk(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Mapping(m) => {
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default();
                walk(
                    v,
                    &if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    },
                    out,
                );
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}
