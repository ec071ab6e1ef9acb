//! Merging the cloud-config fragments of several snippets into one document.
//!
//! Rules, in profile order: lists append; mappings merge key by key; a scalar
//! may be set by several snippets only to the same value, otherwise the merge
//! fails naming both snippets.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use crate::diagnostics::{Error, Result};

/// Top-level cloud-config keys in the order cloud-init runs their modules;
/// keys not listed here follow in alphabetical order.
const KEY_ORDER: &[&str] = &[
    "bootcmd",
    "write_files",
    "growpart",
    "resize_rootfs",
    "disk_setup",
    "fs_setup",
    "mounts",
    "mount_default_fields",
    "users",
    "groups",
    "yum_repos",
    "apt",
    "packages",
    "package_update",
    "package_upgrade",
    "package_reboot_if_required",
    "runcmd",
    "final_message",
    "power_state",
];

/// A cloud-config document being built from fragments.
#[derive(Debug, Default)]
pub struct Merger {
    doc: Mapping,
    /// Which snippet set each scalar, by dotted key path.
    owners: BTreeMap<String, String>,
}

impl Merger {
    /// Merges `fragment`, contributed by `snippet`, into the document.
    pub fn add(&mut self, snippet: &str, fragment: Mapping) -> Result<()> {
        let mut doc = std::mem::take(&mut self.doc);
        let result = merge_map(&mut doc, fragment, "", snippet, &mut self.owners);
        self.doc = doc;
        result
    }

    /// The merged document with its keys in a stable order.
    pub fn finish(self) -> Mapping {
        let mut doc = self.doc;
        let mut out = Mapping::new();
        for key in KEY_ORDER {
            if let Some(v) = doc.remove(*key) {
                out.insert(Value::String((*key).to_string()), v);
            }
        }
        let mut rest: Vec<(Value, Value)> = doc.into_iter().collect();
        rest.sort_by_key(|(k, _)| k.as_str().unwrap_or_default().to_string());
        out.extend(rest);
        out
    }
}

fn merge_map(
    base: &mut Mapping,
    add: Mapping,
    path: &str,
    snippet: &str,
    owners: &mut BTreeMap<String, String>,
) -> Result<()> {
    for (key, value) in add {
        let name = key
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| scalar_text(&key));
        let sub = if path.is_empty() {
            name
        } else {
            format!("{path}.{name}")
        };
        match base.get_mut(&key) {
            None => {
                claim(&value, &sub, snippet, owners);
                base.insert(key, value);
            }
            Some(existing) => merge_value(existing, value, &sub, snippet, owners)?,
        }
    }
    Ok(())
}

fn merge_value(
    base: &mut Value,
    add: Value,
    path: &str,
    snippet: &str,
    owners: &mut BTreeMap<String, String>,
) -> Result<()> {
    match (base, add) {
        (Value::Mapping(b), Value::Mapping(a)) => merge_map(b, a, path, snippet, owners),
        (Value::Sequence(b), Value::Sequence(a)) => {
            b.extend(a);
            Ok(())
        }
        (b, a) if *b == a => Ok(()),
        (b, a) => Err(Error::MergeConflict {
            key: path.to_string(),
            first: owners.get(path).cloned().unwrap_or_else(|| "?".to_string()),
            first_value: scalar_text(b),
            second: snippet.to_string(),
            second_value: scalar_text(&a),
            chosen: None,
        }),
    }
}

fn claim(value: &Value, path: &str, snippet: &str, owners: &mut BTreeMap<String, String>) {
    if let Value::Mapping(m) = value {
        for (k, v) in m {
            let name = k
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| scalar_text(k));
            claim(v, &format!("{path}.{name}"), snippet, owners);
        }
    }
    owners.insert(path.to_string(), snippet.to_string());
}

fn scalar_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(yaml: &str) -> Mapping {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn lists_append_maps_merge_in_order() {
        let mut m = Merger::default();
        m.add(
            "a",
            map("runcmd: [one]\npower_state: {mode: poweroff}\nzeta: 1"),
        )
        .unwrap();
        m.add(
            "b",
            map("runcmd: [two]\npower_state: {delay: now}\nbootcmd: [x]\nalpha: 2"),
        )
        .unwrap();
        let doc = m.finish();
        assert_eq!(
            serde_yaml_ng::to_string(&doc).unwrap(),
            "bootcmd:\n- x\nruncmd:\n- one\n- two\npower_state:\n  mode: poweroff\n  delay: now\nalpha: 2\nzeta: 1\n"
        );
    }

    #[test]
    fn equal_scalars_agree_different_ones_conflict() {
        let mut m = Merger::default();
        m.add("a", map("power_state: {mode: poweroff}")).unwrap();
        m.add("b", map("power_state: {mode: poweroff}")).unwrap();
        let err = m.add("c", map("power_state: {mode: reboot}")).unwrap_err();
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            "snippets `a` and `c` both set cloud-config `power_state.mode`: `a` says \"poweroff\", `c` says \"reboot\""
        );
    }

    #[test]
    fn a_list_against_a_scalar_conflicts() {
        let mut m = Merger::default();
        m.add("a", map("packages: [x]")).unwrap();
        assert!(m.add("b", map("packages: x")).is_err());
    }
}
