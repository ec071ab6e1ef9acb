//! One YAML file's text to values: the YAML itself, then its shape checked
//! by serde, each problem turned into a diagnostic that points at the text.
//!
//! A problem's kind comes from where it arose, never from its words: the
//! text's own structure (a key given twice, a second document, a syntax
//! error), or the serde call that refused the shape ([`ShapeError`]: an
//! unknown key, a missing key, a value of the wrong type).

use std::fmt;

use serde::de::{
    self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor,
    value::{MapDeserializer, SeqDeserializer},
};
use serde_yaml_ng::{Mapping, Value};

use crate::compile::model::{Profile, replaced_key};
use crate::compile::source_map::SourceMap;
use crate::diagnostics::{Error, Location, Result, YamlKind, did_you_mean};

/// The 1-based line of the first line that is neither blank nor a comment.
pub(super) fn first_content(text: &str) -> usize {
    text.lines()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map_or(1, |i| i + 1)
}

/// The 1-based line of the `---` that starts a second document, else the
/// first line with content.
fn second_marker(text: &str) -> usize {
    let mut content = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker && content {
            return i + 1;
        }
        // A document's own leading `---` starts its content.
        content |= marker || (!line.trim().is_empty() && !line.trim_start().starts_with('#'));
    }
    first_content(text)
}

/// `text` (the file `display`, a `what` such as "profile") as a YAML value.
pub(crate) fn value(display: &str, what: &'static str, text: &str) -> Result<Value> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let map = SourceMap::new(text);
        let (kind, at) = match (map.parses, map.duplicate, map.second_document) {
            (true, Some(key), _) => (
                YamlKind::DuplicateKey,
                Some((key.line, key.column, key.len)),
            ),
            (true, None, Some(line)) => (YamlKind::Syntax, Some((line, 1, 3))),
            // serde gives no position for a second document that the
            // source map could not see: the `---` that starts it.
            _ => (
                YamlKind::Syntax,
                e.location().map(|l| (l.line(), l.column(), 1)).or(Some((
                    second_marker(text),
                    1,
                    3,
                ))),
            ),
        };
        let message = e.to_string();
        let message = match message.split_once(" at line ") {
            Some((head, _)) if at.is_some() => head.to_string(),
            _ => message,
        };
        Error::Yaml {
            kind,
            what,
            location: at.map(|(line, column, len)| {
                Location::in_source(display, text, line, column).with_len(len)
            }),
            file: display.to_string(),
            message,
            help: None,
        }
    })
}

/// `value` (parsed from `text`) as a `T`: an unknown key points at the key,
/// any other problem at the value (or the nearest key that holds it).
pub(crate) fn shape<T: DeserializeOwned>(
    display: &str,
    what: &'static str,
    text: &str,
    value: Value,
) -> Result<T> {
    typed(value).map_err(|(path, e)| {
        let map = SourceMap::new(text);
        let path = Some(path).filter(|p| p != ".");
        let span = path.as_deref().and_then(|p| match e.kind {
            YamlKind::UnknownKey => map.key(p),
            _ => map.locate(p),
        });
        let location = match span {
            Some(s) => Location::in_source(display, text, s.line, s.column).with_len(s.len),
            None => Location::in_source(display, text, first_content(text), 1),
        };
        let help = e.help();
        let message = e.message();
        Error::Yaml {
            kind: e.kind,
            what,
            location: Some(location),
            file: display.to_string(),
            help,
            message: match path {
                Some(p) => format!("`{p}`: {message}"),
                None => message,
            },
        }
    })
}

/// Parses one profile file and checks its shape; an empty file is an empty
/// profile.
pub(super) fn parse_file(display: &str, text: &str) -> Result<(Value, Profile)> {
    let value = match value(display, "profile", text)? {
        Value::Null => Value::Mapping(Mapping::new()),
        Value::Mapping(m) => Value::Mapping(m),
        _ => {
            return Err(Error::Yaml {
                kind: YamlKind::WrongType,
                what: "profile",
                location: Some(Location::in_source(display, text, first_content(text), 1)),
                file: display.to_string(),
                message: "the file must be a mapping of sections (instance, job, snippets, …)"
                    .to_string(),
                help: Some("see `bootforge schema` for the format".to_string()),
            });
        }
    };
    // A key the format replaced is said so, never read as a typo.
    if let Some((path, message, help)) = replaced_key(&value) {
        let span = SourceMap::new(text).key(&path);
        return Err(Error::Profile {
            file: display.to_string(),
            location: span
                .map(|s| Location::in_source(display, text, s.line, s.column).with_len(s.len)),
            path,
            message: message.to_string(),
            help: Some(help.to_string()),
        });
    }
    let profile = match &value {
        Value::Mapping(m) if m.is_empty() => Profile::default(),
        _ => shape(display, "profile", text, value.clone())?,
    };
    Ok((value, profile))
}

/// `value` as a `T`, or where (a logical path, `.` for the root) and why not.
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, (String, ShapeError)> {
    serde_path_to_error::deserialize(Shape(value))
        .map_err(|e| (e.path().to_string(), e.into_inner()))
}

/// serde's type names in the words of the profile format.
fn humanize(message: &str) -> String {
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

/// A shape problem, with the kind the serde call that made it gives it.
#[derive(Debug)]
pub(crate) struct ShapeError {
    kind: YamlKind,
    message: String,
    /// For an unknown key or variant: what was given, what is allowed,
    /// and what they are (`keys`, `values`).
    unknown: Option<(String, Vec<&'static str>, &'static str)>,
}

impl ShapeError {
    pub(crate) fn is_unknown_key(&self) -> bool {
        self.kind == YamlKind::UnknownKey
    }

    /// What is wrong, in the words of the profile format.
    pub(crate) fn message(&self) -> String {
        humanize(&self.message)
    }

    /// For an unknown key or variant: the nearest allowed one, or the list.
    pub(crate) fn help(&self) -> Option<String> {
        let (given, allowed, what) = self.unknown.as_ref()?;
        Some(match did_you_mean(given, allowed.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if allowed.is_empty() => format!("no {what} are allowed here"),
            None => format!("the {what} allowed here are: {}", allowed.join(", ")),
        })
    }

    fn new(kind: YamlKind, message: String) -> ShapeError {
        ShapeError {
            kind,
            message,
            unknown: None,
        }
    }
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShapeError {}

/// The allowed names as serde words them: `` `a` ``, `` `a` or `b` ``,
/// `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

impl de::Error for ShapeError {
    /// A value's own check refused it (a duration without a unit…).
    fn custom<T: fmt::Display>(message: T) -> Self {
        ShapeError::new(YamlKind::WrongType, message.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        ShapeError::new(
            YamlKind::WrongType,
            format!("invalid type: {unexpected}, expected {expected}"),
        )
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        ShapeError::new(
            YamlKind::WrongType,
            format!("invalid value: {unexpected}, expected {expected}"),
        )
    }

    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Self {
        ShapeError::new(
            YamlKind::WrongType,
            format!("invalid length {len}, expected {expected}"),
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        ShapeError {
            kind: YamlKind::WrongType,
            message: format!("unknown variant `{variant}`, expected {}", one_of(expected)),
            unknown: Some((variant.to_string(), expected.to_vec(), "values")),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = if expected.is_empty() {
            format!("unknown field `{field}`, there are no fields")
        } else {
            format!("unknown field `{field}`, expected {}", one_of(expected))
        };
        ShapeError {
            kind: YamlKind::UnknownKey,
            message,
            unknown: Some((field.to_string(), expected.to_vec(), "keys")),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        ShapeError::new(YamlKind::WrongType, format!("missing field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        ShapeError::new(YamlKind::DuplicateKey, format!("duplicate field `{field}`"))
    }
}

/// A parsed YAML value as a serde deserializer whose errors are
/// [`ShapeError`]s.
struct Shape(Value);

impl<'de> IntoDeserializer<'de, ShapeError> for Shape {
    type Deserializer = Shape;

    fn into_deserializer(self) -> Shape {
        self
    }
}

impl<'de> Deserializer<'de> for Shape {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, f) => visitor.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Sequence(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(Shape));
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Value::Mapping(entries) => {
                let mut map = MapDeserializer::new(
                    entries
                        .into_iter()
                        .map(|(key, value)| (Shape(key), Shape(value))),
                );
                let out = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
            // A tag (`!foo x`) says nothing to bootforge: the value counts.
            Value::Tagged(tagged) => Shape(tagged.value).deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Shape(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            Value::Tagged(tagged) => Shape(tagged.value).deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(&other), &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// What serde calls `value` in an "invalid type" message.
fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => match n.as_f64() {
            Some(f) => de::Unexpected::Float(f),
            None => de::Unexpected::Other("number"),
        },
        Value::String(s) => de::Unexpected::Str(s),
        Value::Sequence(_) => de::Unexpected::Seq,
        Value::Mapping(_) => de::Unexpected::Map,
        Value::Tagged(_) => de::Unexpected::Other("tagged value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        timeout: crate::compile::duration::Duration,
        #[serde(default)]
        list: Vec<u32>,
        #[serde(default)]
        spot: Option<bool>,
    }

    fn kind(text: &str) -> (YamlKind, String) {
        let v = value("t.yaml", "test", text).and_then(|v| shape::<Doc>("t.yaml", "test", text, v));
        match v.unwrap_err() {
            Error::Yaml {
                kind,
                location: Some(l),
                ..
            } => (kind, format!("{}:{}", l.line, l.column)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn each_kind_comes_from_where_it_arose() {
        assert_eq!(
            kind("timeout: 1m\ntimout: 2m\n"),
            (YamlKind::UnknownKey, "2:1".into())
        );
        assert_eq!(kind("list: []\n"), (YamlKind::WrongType, "1:1".into()));
        assert_eq!(kind("timeout: 5\n"), (YamlKind::WrongType, "1:10".into()));
        assert_eq!(
            kind("timeout: 1m\nlist: x\n"),
            (YamlKind::WrongType, "2:7".into())
        );
        assert_eq!(
            kind("timeout: 1m\nspot: yes\n"),
            (YamlKind::WrongType, "2:7".into())
        );
        assert_eq!(
            kind("timeout: 1m\nlist: [1]\ntimeout: 2m\n"),
            (YamlKind::DuplicateKey, "3:1".into())
        );
        assert_eq!(
            kind("timeout: 1m\n---\nlist: []\n"),
            (YamlKind::Syntax, "2:1".into())
        );
        assert_eq!(kind("timeout: [1m\n"), (YamlKind::Syntax, "1:13".into()));
    }

    #[test]
    fn an_unknown_key_gets_the_nearest_allowed_one() {
        let text = "timeout: 1m\nsopt: true\n";
        let err = shape::<Doc>(
            "t.yaml",
            "test",
            text,
            value("t.yaml", "test", text).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.help().as_deref(), Some("did you mean `spot`?"));
    }
}
