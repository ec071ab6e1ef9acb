//! One profile file's text to values: the YAML, its shape checked by serde,
//! and serde's errors turned into diagnostics that point at the text.

use serde_yaml_ng::{Mapping, Value};

use crate::check::diagnostics::Result;
use crate::check::diagnostics::{Error, Location, strip_path_prefix, unknown_field_help};
use crate::compile::profile::Profile;
use crate::compile::source_map::SourceMap;

/// The 1-based line of the first line that is neither blank nor a comment.
fn first_content(text: &str) -> usize {
    text.lines()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or(1, |i| i + 1)
}

/// The 1-based line of the `---` that starts a file's second YAML document.
fn second_document(text: &str) -> usize {
    let mut content = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker && content {
            return i + 1;
        }
        // A document's own leading `---` is content's start, not a second one.
        content |= marker || (!line.trim().is_empty() && !line.trim_start().starts_with('#'));
    }
    first_content(text)
}

/// Parses one profile file and checks its shape, with the YAML error's
/// position when there is one.
pub(super) fn parse_file(display: &str, text: &str) -> Result<(Value, Profile)> {
    let yaml_error = |e: serde_yaml_ng::Error, path: Option<String>| {
        // The path, when there is one, gives the whole key or value to underline.
        let map = SourceMap::new(text);
        let kind = crate::check::diagnostics::YamlKind::of_serde(&e.to_string());
        let unknown = kind == crate::check::diagnostics::YamlKind::UnknownKey;
        // serde_yaml says `job: duplicate entry with key "timeout"`: point
        // at the second key, the one to remove.
        let duplicate = (kind == crate::check::diagnostics::YamlKind::DuplicateKey)
            .then(|| {
                let text = e.to_string();
                let (mapping, rest) = text.split_once(": duplicate entry with key \"")?;
                let key = rest.split('"').next()?;
                let mapping = mapping.trim_start_matches('.');
                map.key(&if mapping.is_empty() {
                    key.to_string()
                } else {
                    format!("{mapping}.{key}")
                })
            })
            .flatten();
        let span = duplicate.or_else(|| {
            path.as_deref()
                .filter(|p| *p != ".")
                .and_then(|p| if unknown { map.key(p) } else { map.locate(p) })
        });
        let location = match span {
            Some(s) => Some(Location::in_source(display, text, s.line, s.column).with_len(s.len)),
            None => e
                .location()
                .map(|l| (l.line(), l.column()))
                .or_else(|| {
                    // serde gives no position for a second document: point at
                    // the `---` that starts it.
                    e.to_string()
                        .contains("more than one document")
                        .then(|| (second_document(text), 1))
                })
                .map(|(line, column)| Location::in_source(display, text, line, column)),
        };
        let message = e.to_string();
        let message = match message.split_once(" at line ") {
            Some((head, _)) if location.is_some() => head.to_string(),
            _ => message,
        };
        let message = humanize(&strip_path_prefix(&message, path.as_deref()));
        Error::Yaml {
            kind,
            what: "profile",
            location,
            file: display.to_string(),
            help: unknown_field_help(&message),
            message: match path {
                Some(p) if p != "." => format!("`{p}`: {message}"),
                _ => message,
            },
        }
    };
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(e, None))?;
    let value = match value {
        Value::Null => Value::Mapping(Mapping::new()),
        Value::Mapping(m) => Value::Mapping(m),
        _ => {
            return Err(Error::Yaml {
                kind: crate::check::diagnostics::YamlKind::WrongType,
                what: "profile",
                location: Some(Location::in_source(display, text, first_content(text), 1)),
                file: display.to_string(),
                message: "the file must be a mapping of sections (instance, job, snippets, …)"
                    .to_string(),
                help: Some("see `bootforge schema` for the format".to_string()),
            });
        }
    };
    let shape: Profile =
        if text.trim().is_empty() || matches!(&value, Value::Mapping(m) if m.is_empty()) {
            Profile::default()
        } else {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                yaml_error(e.into_inner(), Some(path))
            })?
        };
    Ok((value, shape))
}

/// serde's type names in the words of the profile format.
pub(super) fn humanize(message: &str) -> String {
    let mut out = message.to_string();
    for (from, to) in [
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a string", "expected text"),
        ("expected a boolean", "expected true or false"),
        ("expected a map", "expected a mapping of keys to values"),
    ] {
        out = out.replace(from, to);
    }
    out
}
