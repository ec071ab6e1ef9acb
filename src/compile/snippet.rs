//! Snippets: a manifest with typed parameters, plus the templates it renders.
//!
//! 500 lines of code: the manifest's types and the one checker of a
//! parameter's value against its kind, constraints and wording.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::compile::library::SnippetFiles;
use crate::diagnostics::{Error, Result};

/// The manifest file of every snippet directory.
pub const MANIFEST: &str = "snippet.yaml";

/// `snippet.yaml`: what a snippet is, what it takes and what it renders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// One line saying what the snippet does.
    pub summary: String,
    #[serde(default)]
    pub params: IndexMap<String, Param>,
    /// Snippets that must be in the profile too.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Snippets that must not be in the profile with this one.
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// Snippets that, when the profile uses them, must come before this one
    /// (their sections of a shared file run first).
    #[serde(default)]
    pub after: Vec<String>,
    /// A template giving a cloud-config fragment (a YAML mapping).
    #[serde(default)]
    pub cloud_config: Option<String>,
    /// Files the payload writes with `write_files`.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Extra MIME parts (scripts cloud-init runs itself).
    #[serde(default)]
    pub parts: Vec<PartSpec>,
}

/// One file written by `write_files`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Where the file goes on the instance (may use template expressions).
    pub path: String,
    /// The template giving its content.
    pub template: String,
    #[serde(default = "default_permissions")]
    pub permissions: String,
    /// Several snippets may append sections to one file, in profile order.
    #[serde(default)]
    pub append: bool,
}

fn default_permissions() -> String {
    "0644".to_string()
}

/// One extra MIME part.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSpec {
    pub template: String,
    /// `text/x-shellscript`, `text/cloud-boothook`, …
    pub content_type: String,
    pub filename: String,
}

/// The type of a parameter and what values it accepts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    #[serde(rename = "type")]
    pub kind: ParamKind,
    #[serde(default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default)]
    pub required: bool,
    /// A regular expression the whole string must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// For lists: the type of each item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Param>>,
    /// For objects: their fields.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub fields: IndexMap<String, Param>,
}

/// Parameter types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    #[default]
    String,
    /// An absolute path.
    Path,
    Integer,
    Number,
    Boolean,
    List,
    Object,
    /// String keys to string values (environment variables, tags).
    Map,
}

/// A snippet loaded from its files.
#[derive(Debug, Clone)]
pub struct Snippet {
    pub manifest: Manifest,
    pub files: SnippetFiles,
}

impl Snippet {
    /// Parses and checks a snippet's manifest: its name, its templates, its
    /// parameters' defaults and patterns.
    pub fn load(name: &str, files: &SnippetFiles) -> Result<Snippet> {
        let display = format!("{}/{MANIFEST}", files.dir);
        let text = files.files.get(MANIFEST).ok_or_else(|| Error::Snippet {
            snippet: name.to_string(),
            message: format!("{} has no {MANIFEST}", files.dir),
        })?;
        let what = "snippet manifest";
        let value = crate::compile::parse::value(&display, what, text)?;
        let manifest: Manifest = crate::compile::parse::shape(&display, what, text, value)?;
        let bad = |message: String| Error::Snippet {
            snippet: name.to_string(),
            message,
        };
        if manifest.name != name {
            return Err(bad(format!(
                "{display} says `name: {}` but the snippet's directory is `{name}`; make them the same",
                manifest.name
            )));
        }
        let templates = manifest
            .cloud_config
            .iter()
            .chain(manifest.files.iter().map(|f| &f.template))
            .chain(manifest.parts.iter().map(|p| &p.template));
        for template in templates {
            if !files.files.contains_key(template) {
                return Err(bad(format!(
                    "{display} names template `{template}`, which is not in {}",
                    files.dir
                )));
            }
        }
        for (param, spec) in &manifest.params {
            check_spec(spec).map_err(|m| bad(format!("parameter `{param}`: {m}")))?;
            if let Some(default) = &spec.default {
                check_value(default, spec)
                    .map_err(|m| bad(format!("the default of parameter `{param}` {m}")))?;
            }
        }
        Ok(Snippet {
            manifest,
            files: files.clone(),
        })
    }

    /// The snippet's parameters with their values: what the profile gave,
    /// checked and completed with defaults. Errors say which parameter and why.
    pub fn resolve_params(&self, given: &Mapping) -> std::result::Result<Mapping, ParamError> {
        for key in given.keys() {
            let key = key.as_str().unwrap_or_default();
            if !self.manifest.params.contains_key(key) {
                let names = self.manifest.params.keys().map(String::as_str);
                return Err(ParamError {
                    param: key.to_string(),
                    at: String::new(),
                    key: true,
                    help: Some(match crate::diagnostics::did_you_mean(key, names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "`{}` takes: {}",
                            self.manifest.name,
                            self.manifest
                                .params
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }),
                    message: "is not a parameter of this snippet".to_string(),
                });
            }
        }
        let mut out = Mapping::new();
        for (name, spec) in &self.manifest.params {
            let value = given.get(name.as_str()).filter(|v| !v.is_null());
            let value = match (value, &spec.default) {
                (Some(v), _) => check(v, spec),
                (None, Some(d)) => Ok(d.clone()),
                (None, None) if spec.required => {
                    Err(Issue::new("is required; set it in the profile"))
                }
                (None, None) => Ok(Value::Null),
            }
            .map_err(|issue| ParamError {
                param: name.clone(),
                at: issue.at,
                key: issue.key,
                message: issue.message,
                help: (!spec.summary.is_empty()).then(|| format!("`{name}`: {}", spec.summary)),
            })?;
            out.insert(Value::String(name.clone()), value);
        }
        Ok(out)
    }
}

/// A parameter value that does not fit its declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub param: String,
    /// Where inside the parameter's value (`[1].fs_id`), when inside it.
    pub at: String,
    /// Whether the problem is a key (point at it) rather than a value.
    pub key: bool,
    pub message: String,
    pub help: Option<String>,
}

fn check_spec(spec: &Param) -> std::result::Result<(), String> {
    if let Some(p) = &spec.pattern {
        crate::compile::patterns::compiled(p).map_err(|e| format!("invalid pattern: {e}"))?;
    }
    match spec.kind {
        ParamKind::List => match &spec.items {
            Some(items) => check_spec(items),
            None => Err("a list needs `items:` saying the type of its items".to_string()),
        },
        ParamKind::Object => {
            for (field, f) in &spec.fields {
                check_spec(f).map_err(|m| format!("field `{field}`: {m}"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn short(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_else(|_| "?".to_string());
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// Checks `value` against `spec`, returning it with object defaults filled in.
pub fn check_value(value: &Value, spec: &Param) -> std::result::Result<Value, String> {
    check(value, spec).map_err(|i| i.message)
}

/// A value that does not fit, and where inside the value (`[1].fs_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub at: String,
    pub message: String,
    /// Whether the problem is a key of the value (an unknown field, a
    /// key that does not match), rather than the value at `at`.
    pub key: bool,
}

impl Issue {
    fn new(message: impl Into<String>) -> Issue {
        Issue {
            at: String::new(),
            message: message.into(),
            key: false,
        }
    }

    fn under(self, at: String, lead: String) -> Issue {
        Issue {
            at: format!("{at}{}", self.at),
            message: format!("{lead}{}", self.message),
            key: self.key,
        }
    }
}

/// [`check_value`], saying where inside the value the problem is.
pub fn check(value: &Value, spec: &Param) -> std::result::Result<Value, Issue> {
    let wrong = |want: &str| {
        format!(
            "must be {want}, not {} ({})",
            type_name(value),
            short(value)
        )
    };
    let checked = match spec.kind {
        ParamKind::String | ParamKind::Path => {
            let s = match value {
                Value::String(s) => s.clone(),
                // Numbers where text is expected are taken as their text.
                Value::Number(n) if spec.kind == ParamKind::String => n.to_string(),
                _ => return Err(Issue::new(wrong("a string"))),
            };
            if s.contains('\0') {
                return Err(Issue::new(
                    "contains a NUL byte, which no shell or file can carry",
                ));
            }
            if spec.kind == ParamKind::Path {
                if !s.starts_with('/') {
                    return Err(Issue::new(format!(
                        "must be an absolute path (starting with /), not {s:?}"
                    )));
                }
                if s.chars().any(char::is_control) {
                    return Err(Issue::new(
                        "is a path with a control character (newline, tab…) in it",
                    ));
                }
            }
            if let Some(p) = &spec.pattern {
                let re =
                    crate::compile::patterns::whole(p).map_err(|e| Issue::new(e.to_string()))?;
                if !re.is_match(&s) {
                    return Err(Issue::new(format!(
                        "{s:?} does not match the pattern `{p}`"
                    )));
                }
            }
            Value::String(s)
        }
        ParamKind::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => value.clone(),
            _ => return Err(Issue::new(wrong("an integer"))),
        },
        ParamKind::Number => match value {
            Value::Number(_) => value.clone(),
            _ => return Err(Issue::new(wrong("a number"))),
        },
        ParamKind::Boolean => match value {
            Value::Bool(_) => value.clone(),
            _ => return Err(Issue::new(wrong("true or false"))),
        },
        ParamKind::List => {
            let Value::Sequence(items) = value else {
                return Err(Issue::new(wrong("a list")));
            };
            let item_spec = spec.items.as_deref().cloned().unwrap_or_default();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(
                    check(item, &item_spec)
                        .map_err(|e| e.under(format!("[{i}]"), format!("item {}: ", i + 1)))?,
                );
            }
            Value::Sequence(out)
        }
        ParamKind::Object => {
            let Value::Mapping(map) = value else {
                return Err(Issue::new(wrong("a mapping")));
            };
            for key in map.keys() {
                let key = key.as_str().unwrap_or_default();
                if !spec.fields.contains_key(key) {
                    let hint = crate::diagnostics::did_you_mean(
                        key,
                        spec.fields.keys().map(String::as_str),
                    )
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        format!(
                            "; the fields are: {}",
                            spec.fields.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    });
                    return Err(Issue {
                        at: format!(".{key}"),
                        message: format!("has an unknown field `{key}`{hint}"),
                        key: true,
                    });
                }
            }
            let mut out = Mapping::new();
            for (field, fspec) in &spec.fields {
                let v = match (
                    map.get(field.as_str()).filter(|v| !v.is_null()),
                    &fspec.default,
                ) {
                    (Some(v), _) => check(v, fspec)
                        .map_err(|e| e.under(format!(".{field}"), format!("field `{field}` ")))?,
                    (None, Some(d)) => d.clone(),
                    (None, None) if fspec.required => {
                        return Err(Issue::new(format!(
                            "is missing its required field `{field}`"
                        )));
                    }
                    (None, None) => Value::Null,
                };
                out.insert(Value::String(field.clone()), v);
            }
            Value::Mapping(out)
        }
        ParamKind::Map => {
            let Value::Mapping(map) = value else {
                return Err(Issue::new(wrong("a mapping of names to text")));
            };
            let mut out = Mapping::new();
            for (k, v) in map {
                let (Value::String(k), Value::String(_) | Value::Number(_) | Value::Bool(_)) =
                    (k, v)
                else {
                    return Err(Issue::new(format!(
                        "must map names to text; {} is not",
                        short(v)
                    )));
                };
                if let Some(p) = &spec.pattern {
                    let re = crate::compile::patterns::whole(p)
                        .map_err(|e| Issue::new(e.to_string()))?;
                    if !re.is_match(k) {
                        return Err(Issue {
                            at: format!(".{k}"),
                            message: format!(
                                "has a key {k:?} that does not match the pattern `{p}`"
                            ),
                            key: true,
                        });
                    }
                }
                if k.contains('\0') || v.as_str().is_some_and(|s| s.contains('\0')) {
                    return Err(Issue::new(
                        "contains a NUL byte, which no shell or file can carry",
                    ));
                }
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => short(other),
                };
                out.insert(Value::String(k.clone()), Value::String(text));
            }
            Value::Mapping(out)
        }
    };
    if let Some(n) = checked.as_f64() {
        if let Some(min) = spec.min.filter(|m| n < *m) {
            return Err(Issue::new(format!("is {n}, below the minimum {min}")));
        }
        if let Some(max) = spec.max.filter(|m| n > *m) {
            return Err(Issue::new(format!("is {n}, above the maximum {max}")));
        }
    }
    if !spec.allowed.is_empty() && !spec.allowed.contains(&checked) {
        let allowed: Vec<String> = spec.allowed.iter().map(short).collect();
        return Err(Issue::new(format!(
            "is {}, but must be one of {}",
            short(&checked),
            allowed.join(", ")
        )));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Param {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn v(yaml: &str) -> Value {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn types_patterns_bounds_and_allowed_values() {
        let s = spec("type: string\npattern: 'fs-[0-9a-f]+'");
        assert!(check_value(&v("fs-0abc"), &s).is_ok());
        assert!(
            check_value(&v("fs-0abc; rm"), &s)
                .unwrap_err()
                .contains("does not match")
        );
        let i = spec("type: integer\nmin: 1\nmax: 10");
        assert!(
            check_value(&v("11"), &i)
                .unwrap_err()
                .contains("above the maximum")
        );
        assert!(
            check_value(&v("ten"), &i)
                .unwrap_err()
                .contains("must be an integer")
        );
        let p = spec("type: path");
        assert!(
            check_value(&v("relative/x"), &p)
                .unwrap_err()
                .contains("absolute")
        );
        let a = spec("type: string\nallowed: [stop, continue]");
        assert!(check_value(&v("maybe"), &a).unwrap_err().contains("one of"));
        let s = spec("type: string");
        assert!(
            check_value(&Value::String("a\0b".into()), &s)
                .unwrap_err()
                .contains("NUL")
        );
    }

    #[test]
    fn objects_fill_defaults_and_reject_unknown_fields() {
        let s = spec(
            "type: list\nitems:\n  type: object\n  fields:\n    fs: {type: string, required: true}\n    at: {type: path, default: /mnt}\n",
        );
        let out = check_value(&v("[{fs: a}]"), &s).unwrap();
        assert_eq!(out, v("[{fs: a, at: /mnt}]"));
        let err = check_value(&v("[{fs: a, ta: /x}]"), &s).unwrap_err();
        assert!(
            err.contains("unknown field `ta`; did you mean `at`?"),
            "{err}"
        );
        let err = check_value(&v("[{at: /x}]"), &s).unwrap_err();
        assert!(
            err.contains("item 1: is missing its required field `fs`"),
            "{err}"
        );
    }
}
