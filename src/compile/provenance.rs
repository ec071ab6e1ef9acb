//! Where every value of a profile came from: the deep merge of a profile's
//! layers (parents, the profile, `--set`) that records, for each leaf, the
//! layer that set it. A leaf shared by `profile` and `overrides`.

use std::collections::BTreeMap;
use std::fmt;

use serde_yaml_ng::Value;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default (of the profile format or of a snippet parameter).
    Default,
    /// The profile itself.
    Profile(String),
    /// A profile it extends.
    Parent(String),
    /// A `--set` argument.
    Set(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::Profile(name) => write!(f, "profile {name}"),
            Origin::Parent(name) => write!(f, "parent profile {name}"),
            Origin::Set(arg) => write!(f, "--set {arg}"),
        }
    }
}

pub(crate) fn nearest_origin(origins: &BTreeMap<String, Origin>, path: &str) -> Option<Origin> {
    // A mapping's own path is not recorded, only its leaves: take the first.
    let below = format!("{path}.");
    if let Some((_, o)) = origins
        .range(below.clone()..)
        .next()
        .filter(|(k, _)| k.starts_with(&below))
    {
        return Some(o.clone());
    }
    // Otherwise the value at `path` or the nearest value that contains it.
    let mut probe = path;
    loop {
        if let Some(o) = origins.get(probe) {
            return Some(o.clone());
        }
        probe = &probe[..probe.rfind(['.', '['])?];
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Deep merge: mappings merge key by key, anything else in `child` replaces
/// what `base` had. Records the origin of every leaf that `child` sets.
pub(crate) fn merge(
    base: &mut Value,
    child: Value,
    path: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    match (base, child) {
        (Value::Mapping(base), Value::Mapping(child)) => {
            for (key, value) in child {
                let sub = join(path, &key_text(&key));
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value, &sub, origin, origins),
                    None => {
                        record(&value, &sub, origin, origins);
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, child) => {
            let prefix = format!("{path}.");
            origins.retain(|k, _| !k.starts_with(&prefix));
            record(&child, path, origin, origins);
            *base = child;
        }
    }
}

pub(crate) fn record(
    value: &Value,
    path: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    match value {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                record(v, &join(path, &key_text(k)), origin, origins);
            }
        }
        _ => {
            origins.insert(path.to_string(), origin.clone());
        }
    }
}
