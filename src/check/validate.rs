//! `validate`: every check that can be made before launch, as diagnostics
//! that point at the text to fix.
//!
//! One method per family of checks (identifiers, catalog, times, paths,
//! secrets, size, scripts) on one `Checks` value; together they pass 500
//! lines, each stays short, and they share the profile's positions.

use std::fmt;

use regex::Regex;
use serde::Serialize;
use serde_yaml_ng::Value;

use crate::check::aws_names;
use crate::check::catalog;
use crate::compile::library::Library;
use crate::compile::overrides::Override;
use crate::compile::payload::{SIZE_BUDGET, USER_DATA_LIMIT};
use crate::compile::profile::LoadedProfile;
use crate::compile::{Compiled, compile};
use crate::diagnostics::{Error, IdKind, Location, Result, did_you_mean};

pub use crate::diagnostics::Severity;

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
            severity: e.severity(),
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
            checks.retry();
            checks.max_running();
            checks.paths(&compiled);
            checks.secrets();
            checks.size(&compiled);
            checks.scripts(&compiled);
            checks.found.sort_by_key(|d| std::cmp::Reverse(d.severity));
            checks.found
        }
    }
}

/// Validates every profile in `names` (every profile of the library when
/// empty). A name no profile has is a usage error, as in `compile`.
pub fn validate_all(
    library: &Library,
    names: &[String],
    overrides: &[Override],
) -> Result<Vec<Diagnostic>> {
    let names: Vec<String> = if names.is_empty() {
        library.profile_names().map(str::to_string).collect()
    } else {
        names.to_vec()
    };
    let mut all = Vec::new();
    for name in &names {
        if library.profile(name).is_none() {
            return Err(crate::compile::profile::unknown_profile(library, name));
        }
        all.extend(validate(library, name, overrides));
    }
    Ok(all)
}

/// Whether `found` fails validation: any error, or with `strict` any warning.
pub fn fails(found: &[Diagnostic], strict: bool) -> bool {
    found
        .iter()
        .any(|d| d.severity == Severity::Error || (strict && d.severity == Severity::Warning))
}

struct Checks<'a> {
    p: &'a LoadedProfile,
    found: Vec<Diagnostic>,
}

fn re(pattern: &str) -> Regex {
    crate::compile::patterns::compiled(pattern).expect("the patterns below are valid")
}

fn int(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

impl Checks<'_> {
    /// Records `problem` at the profile value `path`.
    fn report(&mut self, path: &str, problem: Error) {
        let origin = self.p.origin(path);
        let (file, location) = match &origin {
            crate::compile::provenance::Origin::Set(arg) => (
                Some(format!("--set {arg}")),
                Some(crate::diagnostics::set_location(arg, false)),
            ),
            o => (Some(self.p.file_of(o).to_string()), self.p.locate(path)),
        };
        self.found.push(Diagnostic {
            severity: problem.severity(),
            code: problem.code(),
            message: problem.message(),
            path: Some(path.to_string()),
            file,
            location,
            help: problem.help(),
        });
    }

    fn identifiers(&mut self) {
        let i = self.p.profile.instance.clone();
        let region = i.region.clone();
        if !aws_names::REGIONS.contains(&region.as_str()) {
            self.report(
                "instance.region",
                Error::UnknownRegion {
                    suggestion: did_you_mean(&region, aws_names::REGIONS.iter().copied()),
                    region: region.clone(),
                },
            );
        }
        let bad = |kind, value: &str| Error::BadId {
            kind,
            value: value.to_string(),
        };
        if !re(aws_names::AMI).is_match(&i.ami) {
            self.report("instance.ami", bad(IdKind::Ami, &i.ami));
        }
        for (n, subnet) in i.subnets.iter().enumerate() {
            if !re(aws_names::SUBNET).is_match(subnet) {
                self.report(
                    &format!("instance.subnets[{n}]"),
                    bad(IdKind::Subnet, subnet),
                );
            }
        }
        for (n, sg) in i.security_groups.iter().enumerate() {
            if !re(aws_names::SECURITY_GROUP).is_match(sg) {
                self.report(
                    &format!("instance.security_groups[{n}]"),
                    bad(IdKind::SecurityGroup, sg),
                );
            }
        }
        if let Some(key) = &i.key_pair
            && (key.is_empty()
                || key.len() > 255
                || !key.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        {
            self.report("instance.key_pair", bad(IdKind::KeyPair, key));
        }
        match (&i.instance_profile, &i.instance_role) {
            (Some(profile), None) => self.report(
                "instance.instance_profile",
                Error::InstanceRoleMissing {
                    instance_profile: Some(profile.clone()),
                },
            ),
            (None, Some(_)) => self.report(
                "instance.instance_role",
                Error::InstanceRoleMissing {
                    instance_profile: None,
                },
            ),
            (Some(_), Some(role))
                if role.len() > 2048
                    || !re(r"^(arn:aws[a-z-]*:iam::[0-9]{12}:role/)?[A-Za-z0-9_+=,.@/-]+$")
                        .is_match(role) =>
            {
                self.report("instance.instance_role", bad(IdKind::Role, role));
            }
            _ => {}
        }
        if let Some(account) = &i.account
            && !re(aws_names::ACCOUNT).is_match(account)
        {
            self.report("instance.account", bad(IdKind::Account, account));
        }
        // Against an unknown region, every zone would look wrong: the region
        // has its own error.
        if let Some(az) = &i.availability_zone
            && aws_names::REGIONS.contains(&region.as_str())
            && !(az.len() == region.len() + 1
                && az.starts_with(&region)
                && az.ends_with(|c: char| c.is_ascii_lowercase()))
        {
            self.report(
                "instance.availability_zone",
                Error::RegionMismatch {
                    zone: az.clone(),
                    region: region.clone(),
                },
            );
        }
        // Without the SDK's list of types, their shape at least.
        if aws_names::instance_types().is_none() {
            for (n, t) in i.types.iter().enumerate() {
                if !re(aws_names::INSTANCE_TYPE).is_match(t) {
                    self.report(
                        &format!("instance.types[{n}]"),
                        bad(IdKind::InstanceType, t),
                    );
                }
            }
        }
        for (key, value) in &i.tags {
            let path = format!("instance.tags.{key}");
            if key.starts_with("aws:") || key.starts_with("bootforge:") || key == "Name" {
                self.report(&path, Error::ReservedTag { key: key.clone() });
            } else if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
                self.report(&path, Error::BadTag);
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
                self.report(
                    &path,
                    Error::UnknownInstanceType {
                        name: name.clone(),
                        suggestion: did_you_mean(name, known.iter().copied()),
                    },
                );
                continue;
            }
            let Some(t) = catalog::lookup(name) else {
                self.report(&path, Error::NotInCatalog { name: name.clone() });
                continue;
            };
            if let Some(gpu) = &i.gpu
                && !t.gpu.eq_ignore_ascii_case(gpu)
            {
                let with = catalog::with_gpu(gpu);
                self.report(
                    "instance.gpu",
                    Error::GpuMismatch {
                        instance_type: name.clone(),
                        has: t.gpu.to_string(),
                        memory_gib: t.gpu_memory_gib,
                        expected: gpu.clone(),
                        carried_by: with.first().map(|w| (w.name.to_string(), with.len() - 1)),
                        models: catalog::gpu_models()
                            .iter()
                            .map(|m| m.to_string())
                            .collect(),
                    },
                );
            }
            if let Some(f) = family {
                let fam = name.split('.').next().unwrap_or_default();
                if !f.supports.contains(&fam) {
                    self.report(
                        &path,
                        Error::AmiFamily {
                            ami: i.ami.clone(),
                            description: f.description.to_string(),
                            family: fam.to_string(),
                            supports: f.supports.iter().map(|s| s.to_string()).collect(),
                        },
                    );
                }
            }
            if let Some(ceiling) = i.max_cost_usd {
                let job = &self.p.profile.job;
                let seconds = job.timeout.seconds() + job.grace.seconds();
                let hourly = crate::check::catalog::worst_hourly(t, i.market, i.max_spot_price_usd);
                let cost = crate::check::catalog::worst_case(
                    t,
                    i.market,
                    i.max_spot_price_usd,
                    job.retry.as_ref(),
                    seconds,
                );
                if cost > ceiling {
                    self.report(
                        "instance.max_cost_usd",
                        Error::OverBudget {
                            instance_type: name.clone(),
                            cost,
                            price_per_hour: hourly,
                            hours: seconds as f64 / 3600.0,
                            attempts: job.retry.as_ref().map_or(1, |r| r.attempts),
                            ceiling,
                        },
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
        if !(60..=48 * 3600).contains(&timeout) {
            self.report(
                "job.timeout",
                Error::TimeoutBounds {
                    timeout: job.timeout.to_string(),
                    too_long: timeout > 48 * 3600,
                },
            );
        }
        if !(60..=2 * 3600).contains(&grace) {
            self.report(
                "job.grace",
                Error::GraceBounds {
                    grace: job.grace.to_string(),
                    too_long: grace > 2 * 3600,
                },
            );
        }
        // The finalizer starts at most kill_after past the timeout and may
        // take its whole bound; the dead-man's switch must not cut it short.
        let finalize = compiled
            .param("shutdown-trap", "finalize_seconds")
            .and_then(Value::as_u64)
            .unwrap_or(30);
        if kill + finalize > grace {
            self.report(
                "job.kill_after",
                Error::FinalizerPastGrace {
                    kill_after: job.kill_after.to_string(),
                    finalize_seconds: finalize,
                    grace: job.grace.to_string(),
                },
            );
        }
        if compiled.snippets.iter().all(|s| s.name != "deadman") {
            self.report("snippets", Error::NoDeadman);
        }
        let mounts = compiled
            .param("efs-mount", "mounts")
            .and_then(Value::as_sequence)
            .map_or(0, Vec::len) as u64;
        let setup = mounts * int(compiled.param("efs-mount", "dns_wait_seconds"))
            + int(compiled.param("requirements", "timeout_minutes")) * 60
            + int(compiled.param("gpu-ready", "wait_seconds"));
        if setup >= timeout {
            self.report(
                "job.timeout",
                Error::SetupBudget {
                    setup_seconds: setup,
                    timeout_seconds: timeout,
                },
            );
        }
    }

    fn max_running(&mut self) {
        if let Some(value) = self.p.profile.job.max_running.filter(|m| *m == 0) {
            self.report("job.max_running", Error::MaxRunning { value });
        }
    }

    fn retry(&mut self) {
        use crate::compile::model::{MAX_ATTEMPTS, RetryOn};
        let Some(retry) = self.p.profile.job.retry.clone() else {
            return;
        };
        let policy = |problem: String| Error::RetryPolicy {
            problem,
            max_attempts: MAX_ATTEMPTS,
            outcomes: RetryOn::ALL.map(RetryOn::name).join(", "),
        };
        if !(1..=MAX_ATTEMPTS).contains(&retry.attempts) {
            self.report(
                "job.retry.attempts",
                policy(format!(
                    "has {} attempts in all, outside 1 to {MAX_ATTEMPTS}",
                    retry.attempts
                )),
            );
        }
        if retry.on.is_empty() {
            self.report(
                "job.retry.on",
                policy("names no outcome to retry on".to_string()),
            );
        }
        let market = self.p.profile.instance.market;
        match retry.on_demand_after {
            Some(_) if !market.uses_spot() => self.report(
                "job.retry.on_demand_after",
                Error::RetryNoEffect {
                    key: "on_demand_after",
                    why: format!("instance.market is {}", market.name()),
                },
            ),
            Some(after) if after >= retry.attempts && retry.attempts >= 1 => self.report(
                "job.retry.on_demand_after",
                Error::RetryNoEffect {
                    key: "on_demand_after",
                    why: format!(
                        "after {after} interruptions no attempt is left of the {} in all",
                        retry.attempts
                    ),
                },
            ),
            _ => {}
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
        let under = crate::compile::paths::is_under;
        for (a, ma) in mounts.iter().enumerate() {
            for (b, mb) in mounts.iter().enumerate().skip(a + 1) {
                let path = format!("snippets.efs-mount.mounts[{b}].mount_point");
                if ma == mb {
                    self.report(
                        &path,
                        Error::MountedTwice {
                            mount_point: mb.clone(),
                        },
                    );
                } else if under(ma, mb) {
                    self.report(
                        &path,
                        Error::MountHidden {
                            outer: mb.clone(),
                            inner: ma.clone(),
                        },
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
                self.report(
                    &format!("snippets.{snippet}.{p}"),
                    Error::PathNotProvided {
                        path: path.to_string(),
                        required: snippet == "pipeline",
                        mount_points: mounts.clone(),
                    },
                );
            }
        }
        if let Some(cache) = compiled
            .param("requirements", "cache_dir")
            .and_then(Value::as_str)
            && !mounts.iter().any(|m| under(cache, m))
        {
            self.report(
                "snippets.requirements.cache_dir",
                Error::CacheNotKept {
                    cache_dir: cache.to_string(),
                },
            );
        }
        let log_dir = self.p.profile.job.log_dir.clone();
        if !mounts.iter().any(|m| under(&log_dir, m)) {
            self.report("job.log_dir", Error::LogsNotKept { log_dir });
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
                self.report(
                    &path,
                    Error::Secret {
                        path: path.clone(),
                        what,
                    },
                );
            }
        }
    }

    /// The budget is on the bytes EC2 receives: a payload past the raw
    /// limit is gzipped (`compression: auto`) and cloud-init decompresses
    /// it, so only what is launched can run out of room.
    fn size(&mut self, compiled: &Compiled) {
        let payload = &compiled.payload;
        if payload.bytes.len() > SIZE_BUDGET {
            self.report(
                "snippets",
                Error::SizeBudget {
                    bytes: payload.bytes.len(),
                    raw: payload.raw.len(),
                    limit: USER_DATA_LIMIT,
                    gzipped: payload.gzip,
                },
            );
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
                    .filter(|p| p.origin != crate::compile::provenance::Origin::Default)
                    .map(|p| format!("`{}` ({})", p.name, p.origin))
                    .collect();
                let problem = Error::BadScript {
                    file: file.path.clone(),
                    line,
                    what,
                    at,
                    snippet: snippet.clone(),
                    template: template.clone(),
                    fed_by: fed,
                };
                // The line of the snippet's output, which is its template's
                // line unless the template loops or branches above it.
                let location = Location {
                    file: template.clone(),
                    line: at,
                    column: 1,
                    len: 1,
                    text: None,
                };
                self.found.push(Diagnostic {
                    severity: problem.severity(),
                    code: problem.code(),
                    message: problem.message(),
                    path: Some(format!("snippets.{snippet}")),
                    file: Some(template),
                    location: Some(location),
                    help: problem.help(),
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
