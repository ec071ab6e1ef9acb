//! `--set dotted.path=value`: parsed as typed YAML and applied onto the
//! merged profile, each value recorded as coming from its argument.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use crate::compile::provenance::{Origin, join, merge, record};
use crate::diagnostics::{Error, Result};

/// A `--set dotted.path=value` argument.
#[derive(Debug, Clone)]
pub struct Override {
    pub arg: String,
    pub path: Vec<String>,
    pub value: Value,
}

impl Override {
    /// Parses `dotted.path=value`; the value is read as YAML (so `60`,
    /// `true` and `[a, b]` keep their types), or as a plain string when it
    /// is not YAML. `job_id=X` is short for `job.id=X`.
    pub fn parse(arg: &str) -> Result<Override> {
        let err = |message: &str, help: &str| Error::Set {
            arg: arg.to_string(),
            message: message.to_string(),
            help: Some(help.to_string()),
            path_is_wrong: true,
        };
        let (path, raw) = arg.split_once('=').ok_or_else(|| {
            err(
                "expected `dotted.path=value`",
                "for example --set job.timeout=60m",
            )
        })?;
        let path = if path == "job_id" { "job.id" } else { path };
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        if segments.iter().any(|s| s.trim().is_empty()) {
            return Err(err(
                "the path has an empty part",
                "paths are keys joined by dots, like snippets.pipeline.script",
            ));
        }
        let value = match serde_yaml_ng::from_str::<Value>(raw) {
            // Text stays exactly as typed (YAML would cut it at ` #`), unless
            // it was quoted on purpose.
            Ok(Value::String(s)) if raw.starts_with(['"', '\'']) => Value::String(s),
            Ok(Value::String(_) | Value::Tagged(_)) | Err(_) => Value::String(raw.to_string()),
            // An empty right-hand side means the empty string, not null.
            Ok(Value::Null) if raw.trim().is_empty() => Value::String(raw.to_string()),
            Ok(v) => v,
        };
        Ok(Override {
            arg: arg.to_string(),
            path: segments,
            value,
        })
    }
}

pub(super) fn apply(
    root: &mut Value,
    o: &Override,
    origins: &mut BTreeMap<String, Origin>,
) -> Result<()> {
    let mut node = root;
    let mut walked = String::new();
    let (last, parents) = o
        .path
        .split_last()
        .expect("Override::parse makes at least one segment");
    for segment in parents {
        walked = join(&walked, segment);
        let Value::Mapping(map) = node else {
            return Err(not_a_section(o, &walked));
        };
        let key = Value::String(segment.clone());
        if !map.contains_key(&key) || matches!(map.get(&key), Some(Value::Null)) {
            map.insert(key.clone(), Value::Mapping(Mapping::new()));
        }
        node = map.get_mut(&key).expect("inserted above");
    }
    let Value::Mapping(map) = node else {
        return Err(not_a_section(o, &walked));
    };
    let key = Value::String(last.clone());
    let full = join(&walked, last);
    let origin = Origin::Set(o.arg.clone());
    match map.get_mut(&key) {
        Some(existing) => merge(existing, o.value.clone(), &full, &origin, origins),
        None => {
            record(&o.value, &full, &origin, origins);
            map.insert(key, o.value.clone());
        }
    }
    Ok(())
}

fn not_a_section(o: &Override, walked: &str) -> Error {
    Error::Set {
        arg: o.arg.clone(),
        message: format!("`{walked}` is a value, not a section with keys"),
        help: Some(format!("set `{walked}` itself instead")),
        path_is_wrong: true,
    }
}
