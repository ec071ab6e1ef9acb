//! The catalogue's words: what went wrong in one line, and what to do about
//! it. The only place messages are worded; long on purpose, so that every
//! variant's wording reads side by side.

use super::{Error, IdKind};

impl Error {
    /// What went wrong, in one line.
    pub fn message(&self) -> String {
        match self {
            Error::Io {
                path,
                action,
                source,
            } => format!("cannot {action} {}: {source}", path.display()),
            Error::Yaml {
                what,
                file,
                message,
                ..
            } => format!("invalid {what} {file}: {message}"),
            Error::Profile {
                file,
                path,
                message,
                ..
            } => format!("invalid profile {file}: `{path}` {message}"),
            Error::UnknownProfile {
                name, suggestion, ..
            } => match suggestion {
                Some(s) => format!("no profile named `{name}`; did you mean `{s}`?"),
                None => format!("no profile named `{name}`"),
            },
            Error::UnknownSnippet {
                file,
                name,
                suggestion,
                ..
            } => match suggestion {
                Some(s) => format!(
                    "invalid profile {file}: no snippet named `{name}`; did you mean `{s}`?"
                ),
                None => format!("invalid profile {file}: no snippet named `{name}`"),
            },
            Error::ExtendsCycle { chain, .. } => {
                format!(
                    "profiles extend each other in a circle: {}",
                    chain.join(" -> ")
                )
            }
            Error::Set { arg, message, .. } => format!("invalid --set {arg}: {message}"),
            Error::Param {
                file,
                snippet,
                param,
                origin,
                message,
                ..
            } if param.is_empty() => {
                format!("invalid profile {file}: snippet `{snippet}` ({origin}) {message}")
            }
            Error::Param {
                file,
                snippet,
                param,
                origin,
                message,
                ..
            } => {
                format!(
                    "invalid profile {file}: snippet `{snippet}`, parameter `{param}` ({origin}) {message}"
                )
            }
            Error::Requires {
                file,
                snippet,
                required,
                dropped,
                ..
            } => format!(
                "invalid profile {file}: snippet `{snippet}` requires snippet `{required}`, which {}",
                if *dropped {
                    "this profile drops"
                } else {
                    "the profile does not use"
                }
            ),
            Error::Order {
                file,
                snippet,
                before,
                ..
            } => {
                format!(
                    "invalid profile {file}: snippet `{snippet}` must come after `{before}` under `snippets:`"
                )
            }
            Error::Conflicts {
                file,
                snippet,
                other,
                ..
            } => {
                format!(
                    "invalid profile {file}: snippets `{snippet}` and `{other}` cannot be used together"
                )
            }
            Error::Snippet { snippet, message } => {
                format!("invalid snippet `{snippet}`: {message}")
            }
            Error::Render {
                snippet,
                template,
                line,
                message,
                ..
            } => match line {
                Some(line) => format!(
                    "snippet `{snippet}` failed to render {template} at line {line}: {message}"
                ),
                None => format!("snippet `{snippet}` failed to render {template}: {message}"),
            },
            Error::MergeConflict {
                key,
                first,
                first_value,
                second,
                second_value,
                chosen,
            } => format!(
                "snippets `{first}` and `{second}` both set cloud-config `{key}`: `{first}` says {first_value}, `{second}` says {second_value}{}",
                chosen
                    .as_ref()
                    .and_then(|c| c.template.as_ref())
                    .map(|t| format!(" (in {t})"))
                    .unwrap_or_default()
            ),
            Error::Output {
                snippet, message, ..
            } => {
                format!("snippet `{snippet}` produced invalid output: {message}")
            }
            Error::TooLarge {
                profile,
                raw,
                gzipped,
                limit,
            } => format!(
                "the payload of profile `{profile}` is {raw} bytes, {gzipped} bytes gzipped: more than EC2's user-data limit of {limit} bytes"
            ),
            Error::Usage { message } | Error::Environment { message, .. } => message.clone(),
            Error::CostGuard { profile, reasons } => format!(
                "refusing to launch profile `{profile}`: no instance type fits its cost ceiling ({})",
                reasons.join("; ")
            ),
            Error::Quota { code, message } => {
                format!("RunInstances: {code}: {message}")
            }
            Error::UnknownRegion { region, .. } => format!("`{region}` is not an AWS region"),
            Error::BadId { kind, value } => match kind {
                IdKind::Ami => format!("`{value}` is not an AMI id"),
                IdKind::Subnet => format!("`{value}` is not a subnet id"),
                IdKind::SecurityGroup => format!("`{value}` is not a security group id"),
                IdKind::KeyPair => format!("{value:?} is not a key pair name"),
                IdKind::Account => format!("`{value}` is not an AWS account id"),
                IdKind::InstanceType => format!("`{value}` is not an instance type"),
                IdKind::Role => format!("`{value}` is neither a role name nor a role ARN"),
            },
            Error::InstanceRoleMissing {
                instance_profile: Some(p),
            } => format!("the instance profile `{p}` is given without the role inside it"),
            Error::InstanceRoleMissing {
                instance_profile: None,
            } => "a role is given without the instance profile that carries it".to_string(),
            Error::RegionMismatch { zone, region } => {
                format!("`{zone}` is not an availability zone of region `{region}`")
            }
            Error::ReservedTag { key } => format!("tag `{key}` is set by AWS or by bootforge"),
            Error::BadTag => "tag keys are 1 to 128 characters, values at most 256".to_string(),
            Error::UnknownInstanceType { name, .. } => {
                format!("`{name}` is not an EC2 instance type")
            }
            Error::NotInCatalog { name } => format!(
                "`{name}` is not in bootforge's catalog: its GPU and price cannot be checked"
            ),
            Error::GpuMismatch {
                instance_type,
                has,
                memory_gib,
                expected,
                ..
            } => format!(
                "`{instance_type}` carries an NVIDIA {has} {memory_gib} GB, not the {expected} that `instance.gpu` expects"
            ),
            Error::AmiFamily {
                ami,
                description,
                family,
                ..
            } => format!("the AMI {ami} ({description}) does not support the {family} family"),
            Error::OverBudget {
                instance_type,
                cost,
                price_per_hour,
                hours,
                attempts: 1,
                ceiling,
            } => format!(
                "a job on {instance_type} may cost ${cost:.2} (${price_per_hour:.4}/h × {hours:.2} h of timeout and grace), over the ceiling of ${ceiling:.2}"
            ),
            Error::OverBudget {
                instance_type,
                cost,
                hours,
                attempts,
                ceiling,
                ..
            } => format!(
                "a job on {instance_type} may cost ${cost:.2} in the worst case of its retry policy ({attempts} attempts of {hours:.2} h of timeout and grace, each at its cap), over the ceiling of ${ceiling:.2}"
            ),
            Error::RetryPolicy { problem, .. } => format!("the retry policy {problem}"),
            Error::RetryNoEffect { key, why } => format!("`job.retry.{key}` has no effect: {why}"),
            Error::MaxRunning { value } => format!("`job.max_running` is {value}: no job of this profile could ever start"),
            Error::TimeoutBounds {
                timeout,
                too_long: true,
            } => format!("a budget of {timeout} is past the 48 h a one-shot job may take"),
            Error::TimeoutBounds {
                timeout,
                too_long: false,
            } => format!("a budget of {timeout} leaves no time to boot and mount"),
            Error::GraceBounds {
                grace,
                too_long: false,
            } => format!(
                "a grace of {grace} leaves the finalizer no time to write the status before the dead-man's switch"
            ),
            Error::GraceBounds {
                grace,
                too_long: true,
            } => format!("a grace of {grace} keeps a finished-or-stuck instance paid for long"),
            Error::FinalizerPastGrace {
                kill_after,
                finalize_seconds,
                grace,
            } => format!(
                "SIGKILL {kill_after} after the timeout and {finalize_seconds}s for the finalizer do not fit in the {grace} grace"
            ),
            Error::NoDeadman => "the profile has no dead-man's switch: nothing powers the instance off if the runner never starts".to_string(),
            Error::SetupBudget {
                setup_seconds,
                timeout_seconds,
            } => format!(
                "the setup phases may take up to {setup_seconds}s, the whole {timeout_seconds}s budget"
            ),
            Error::MountedTwice { mount_point } => {
                format!("{mount_point} is mounted twice; the second mount hides the first")
            }
            Error::MountHidden { outer, inner } => format!("mounting {outer} after {inner} hides it"),
            Error::PathNotProvided { path, .. } => format!(
                "{path} is on no mounted file system and not written by the payload: it will not be there at boot"
            ),
            Error::CacheNotKept { cache_dir } => format!(
                "{cache_dir} is on no mounted file system: the cached environments are lost with the instance and no later job finds them"
            ),
            Error::LogsNotKept { log_dir } => format!(
                "{log_dir} is on no mounted file system: logs and status are lost when the instance terminates"
            ),
            Error::Secret { path, what } => format!(
                "`{path}` holds {what}; user-data is readable by any process on the instance and in the EC2 console"
            ),
            Error::SizeBudget {
                bytes,
                raw,
                limit,
                gzipped,
            } => format!(
                "the payload EC2 receives is {bytes} bytes{}, {}% of its {limit}-byte limit",
                if *gzipped {
                    format!(" (gzipped from {raw})")
                } else {
                    String::new()
                },
                bytes * 100 / limit.max(&1)
            ),
            Error::BadScript {
                file,
                line,
                what,
                at,
                snippet,
                template,
                ..
            } => format!(
                "{file} does not parse at its line {line}: {what}; that line is line {at} of what snippet `{snippet}` renders from {template}"
            ),
            Error::Aws {
                operation,
                code,
                message,
                ..
            } if code.is_empty() => format!("{operation}: {message}"),
            Error::Aws {
                operation,
                code,
                message,
                ..
            } => format!("{operation}: {code}: {message}"),
        }
    }

    /// What to do about it, when there is more to say than the message.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Yaml { help, .. }
            | Error::Profile { help, .. }
            | Error::Set { help, .. }
            | Error::Param { help, .. }
            | Error::Environment { help, .. }
            | Error::Aws { help, .. } => help.clone(),
            Error::UnknownRegion { suggestion, .. } => Some(match suggestion {
                Some(r) => format!("did you mean `{r}`? (the regions are the AWS SDK's, every partition's)"),
                None => "regions look like us-east-2 (the regions are the AWS SDK's, every partition's)".to_string(),
            }),
            Error::BadId { kind, .. } => Some(
                match kind {
                    IdKind::Ami => "AMI ids look like ami-0d67eb9a9a933bd88",
                    IdKind::Subnet => "subnet ids look like subnet-098dc7573fb6bf8bd",
                    IdKind::SecurityGroup => "security group ids look like sg-0906d54ac3d704022 (give ids, not names)",
                    IdKind::KeyPair => "a key pair name is 1 to 255 printable ASCII characters",
                    IdKind::Account => "an account id is 12 digits",
                    IdKind::InstanceType => "instance types look like g6e.xlarge",
                    IdKind::Role => "a role name is letters, digits and +=,.@_-; an ARN looks like arn:aws:iam::222634388391:role/NAME",
                }
                .to_string(),
            ),
            Error::InstanceRoleMissing { instance_profile: Some(_) } => Some("name the role too (instance.instance_role: its name or ARN): `iam-policy` scopes iam:PassRole to the role, whose name is often not the profile's".to_string()),
            Error::InstanceRoleMissing { instance_profile: None } => Some("EC2 is given an instance profile, never a role: set instance.instance_profile".to_string()),
            Error::RegionMismatch { .. } => Some("an availability zone is its region and a letter, like us-east-2b".to_string()),
            Error::ReservedTag { .. } => Some("choose another key; bootforge sets Name and the bootforge:* tags itself".to_string()),
            Error::UnknownInstanceType { suggestion, .. } => Some(match suggestion {
                Some(t) => format!("did you mean `{t}`? (the types are the AWS SDK's)"),
                None => "instance types look like g6e.xlarge (the types are the AWS SDK's)".to_string(),
            }),
            Error::NotInCatalog { .. } => Some("the catalog holds the G4dn, G5, G6, G6e, P3, P4d and P5 families; check the type's GPU and price yourself".to_string()),
            Error::GpuMismatch { carried_by: Some((t, more)), expected, has, .. } => Some(format!("the {expected} is on {t} (and {more} more); or expect `gpu: {has}`")),
            Error::GpuMismatch { carried_by: None, models, .. } => Some(format!("known GPU models: {}", models.join(", "))),
            Error::AmiFamily { supports, .. } => Some(format!("it supports {}", supports.join(", "))),
            Error::OverBudget { attempts: 1, .. } => Some("raise max_cost_usd, shorten job.timeout, or choose a cheaper type".to_string()),
            Error::OverBudget { .. } => Some("raise max_cost_usd, allow fewer job.retry.attempts, cap the spot price with instance.max_spot_price_usd, or shorten job.timeout".to_string()),
            Error::RetryPolicy {
                max_attempts,
                outcomes,
                ..
            } => Some(format!(
                "give `job.retry` 1 to {max_attempts} attempts in all and at least one outcome in `on` ({outcomes}), or remove it"
            )),
            Error::RetryNoEffect { key, .. } => Some(format!("remove `job.retry.{key}`, or change what it depends on")),
            Error::MaxRunning { .. } => Some("give it 1 or more, or remove it for no limit".to_string()),
            Error::TimeoutBounds { too_long: true, .. } => Some("split the job, or raise this check's bound in bootforge if you mean it".to_string()),
            Error::GraceBounds { too_long: false, .. } => Some("give it at least 1m; 5m to 10m is usual".to_string()),
            Error::FinalizerPastGrace { finalize_seconds, .. } => Some(format!("make the grace at least kill_after + {finalize_seconds}s (the finalizer's bound, snippets.shutdown-trap.finalize_seconds)")),
            Error::NoDeadman => Some("add `deadman: {}` first under `snippets:`".to_string()),
            Error::SetupBudget { .. } => Some("lengthen job.timeout or shorten the setup bounds".to_string()),
            Error::MountHidden { .. } => Some("list the outer mount point first".to_string()),
            Error::PathNotProvided { mount_points, .. } if mount_points.is_empty() => Some("mount the file system that holds it with the efs-mount snippet".to_string()),
            Error::PathNotProvided { mount_points, .. } => {
                let mut distinct: Vec<&String> = Vec::new();
                for m in mount_points {
                    if !distinct.contains(&m) {
                        distinct.push(m);
                    }
                }
                let distinct: Vec<&str> = distinct.into_iter().map(String::as_str).collect();
                Some(format!("the mount points are {}", distinct.join(", ")))
            }
            Error::CacheNotKept { .. } => Some("put the cache under an EFS mount point".to_string()),
            Error::LogsNotKept { .. } => Some("put job.log_dir under an EFS mount point".to_string()),
            Error::Secret { .. } => Some("keep secrets in AWS Secrets Manager or SSM Parameter Store and let the instance's role read them at run time".to_string()),
            Error::SizeBudget { gzipped: false, .. } => Some("little room is left: keep large content on the EFS, or let `output.compression: auto` gzip it past the raw limit".to_string()),
            Error::SizeBudget { gzipped: true, .. } => Some("little room is left even gzipped: keep large content on the EFS or an S3 object the instance fetches".to_string()),
            Error::BadScript { fed_by, .. } if fed_by.is_empty() => Some("the snippet's template is wrong: fix it".to_string()),
            Error::BadScript { fed_by, .. } => Some(format!("the snippet was given {}; a value printed with `| safe` must be valid shell", fed_by.join(", "))),
            Error::Quota { .. } => Some(
                "the account's quota for this kind of instance is used up: try later (exit code 75), or ask AWS for more in Service Quotas".to_string(),
            ),
            Error::CostGuard { .. } => Some(
                "raise instance.max_cost_usd, shorten job.timeout or job.grace, or list a cheaper type (`bootforge cost PROFILE` shows them)"
                    .to_string(),
            ),
            Error::UnknownProfile { known, .. } if known.is_empty() => {
                Some("no profile is known; add one with --profiles DIR".to_string())
            }
            Error::UnknownProfile { known, .. } => Some(format!(
                "known profiles: {} (add more with --profiles DIR, or give a path to a .yaml file)",
                known.join(", ")
            )),
            Error::UnknownSnippet { suggestion: None, .. } => Some(
                "`bootforge list snippets` shows the snippets there are; add your own with --snippets DIR".to_string(),
            ),
            Error::ExtendsCycle { .. } => Some("remove one of these `extends:` lines".to_string()),
            Error::Requires {
                snippet,
                required,
                dropped: true,
                ..
            } => Some(format!(
                "remove `{required}: false`, or drop `{snippet}` as well"
            )),
            Error::Requires { snippet, required, .. } => {
                Some(format!("add `{required}:` under `snippets:` before `{snippet}`"))
            }
            Error::Order { snippet, before, .. } => Some(format!("move `{before}` above `{snippet}`")),
            Error::Conflicts { .. } => {
                Some("keep one of them (set the other to `false` to drop it from a parent profile)".to_string())
            }
            Error::Render { fed_by, .. } if !fed_by.is_empty() => {
                Some(format!("its values came from {}", fed_by.join(", ")))
            }
            Error::MergeConflict { .. } => Some(
                "change one snippet's parameters so that they agree, or drop one of the snippets".to_string(),
            ),
            Error::TooLarge { .. } => Some(
                "move large files to the EFS or an S3 object the instance fetches, and keep user-data to the boot logic"
                    .to_string(),
            ),
            _ => None,
        }
    }
}
