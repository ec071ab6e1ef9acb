//! A profile loaded: its `extends` chain merged deeply, `--set` applied,
//! and where every value came from, with positions for messages. The
//! format's types are in `model`, the merge and its origins in
//! `provenance`, one file's YAML in `parse`, the `--set` arguments in
//! `overrides`.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use crate::compile::library::{Library, SourceFile};
use crate::compile::model::{Profile, replaced_key};
use crate::compile::overrides::{Override, apply};
use crate::compile::parse::{parse_file, typed};
use crate::compile::provenance::{Origin, merge, nearest_origin};
use crate::compile::source_map::{SourceMap, Span};
use crate::diagnostics::{Error, Location, Result, did_you_mean};

/// A profile with its `extends` chain merged and `--set` applied.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    pub name: String,
    /// The file it was read from, as shown in messages.
    pub file: String,
    /// The profile and its ancestors, the profile first.
    pub chain: Vec<String>,
    pub profile: Profile,
    /// Where each value that did not come from a default came from, by
    /// dotted path (`job.timeout`, `snippets.efs-mount.mounts`).
    pub origins: BTreeMap<String, Origin>,
    /// The files of the chain by profile name, for messages and positions.
    files: BTreeMap<String, SourceFile>,
}

impl LoadedProfile {
    /// Where the value at `path` came from: the nearest recorded path that
    /// is `path` itself or contains it.
    pub fn origin(&self, path: &str) -> Origin {
        nearest_origin(&self.origins, path).unwrap_or(Origin::Default)
    }

    /// The file an origin points at, or the profile's own file.
    pub fn file_of(&self, origin: &Origin) -> &str {
        match origin {
            Origin::Profile(name) | Origin::Parent(name) => self
                .files
                .get(name)
                .map_or(self.file.as_str(), |f| f.display.as_str()),
            _ => &self.file,
        }
    }

    /// An error about the value at `path`, said against where it came from:
    /// the `--set` argument, or the file and position that hold it.
    pub fn error(&self, path: &str, message: String, help: Option<String>) -> Error {
        match self.origin(path) {
            Origin::Set(arg) => Error::Set {
                arg,
                message: format!("`{path}` {message}"),
                help,
                path_is_wrong: false,
            },
            origin => Error::Profile {
                file: self.file_of(&origin).to_string(),
                path: path.to_string(),
                message,
                help,
                location: self.locate(path),
            },
        }
    }

    /// Where `path` is written: in the file its value came from, or, for a
    /// default, the nearest enclosing value of the profile's own file.
    pub fn locate(&self, path: &str) -> Option<Location> {
        self.find(path, |map| map.locate(path))
    }

    /// The key `path` itself, in the file its value came from.
    pub fn locate_key(&self, path: &str) -> Option<Location> {
        self.find(path, |map| map.key(path).or_else(|| map.locate(path)))
    }

    fn find(&self, path: &str, pick: impl Fn(&SourceMap) -> Option<Span>) -> Option<Location> {
        let source = match self.origin(path) {
            Origin::Profile(name) | Origin::Parent(name) => self.files.get(&name),
            _ => self.files.get(&self.name),
        }?;
        // A value the file lacks altogether is pointed at from its first line.
        let span = pick(&SourceMap::new(&source.text)).unwrap_or(Span {
            line: 1,
            column: 1,
            len: 1,
        });
        Some(
            Location::in_source(&source.display, &source.text, span.line, span.column)
                .with_len(span.len),
        )
    }
}

/// The position of the `extends:` value in `source`.
fn extends_location(source: &SourceFile) -> Option<Location> {
    let span = SourceMap::new(&source.text).locate("extends")?;
    Some(
        Location::in_source(&source.display, &source.text, span.line, span.column)
            .with_len(span.len),
    )
}

/// The error for a profile name nobody provides, with the closest one.
pub fn unknown_profile(library: &Library, name: &str) -> Error {
    let known: Vec<String> = library.profile_names().map(str::to_string).collect();
    Error::UnknownProfile {
        suggestion: did_you_mean(name, known.iter().map(String::as_str)),
        name: name.to_string(),
        known,
    }
}

/// Loads profile `name` from `library`, merging its `extends` chain and
/// applying `overrides` in order.
pub fn load(library: &Library, name: &str, overrides: &[Override]) -> Result<LoadedProfile> {
    let mut chain = Vec::new();
    let mut layers = Vec::new();
    let mut files: BTreeMap<String, SourceFile> = BTreeMap::new();
    let mut next = Some(name.to_string());
    while let Some(current) = next.take() {
        let child = chain.last().and_then(|c: &String| files.get(c));
        if chain.contains(&current) {
            let location = child.and_then(extends_location);
            chain.push(current);
            return Err(Error::ExtendsCycle { chain, location });
        }
        // A profile on disk finds the parent beside it first.
        let beside = child.and_then(|c| crate::compile::library::sibling(c, &current));
        let Some(source) = beside.as_ref().or_else(|| library.profile(&current)) else {
            let known: Vec<String> = library.profile_names().map(str::to_string).collect();
            let suggestion = did_you_mean(&current, known.iter().map(String::as_str));
            return Err(match child {
                Some(child) => Error::Profile {
                    file: child.display.clone(),
                    path: "extends".to_string(),
                    message: format!("names profile `{current}`, which does not exist"),
                    help: Some(match suggestion {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("known profiles: {}", known.join(", ")),
                    }),
                    location: extends_location(child),
                },
                None => unknown_profile(library, &current),
            });
        };
        let (value, shape) = parse_file(&source.display, &source.text)?;
        next = shape.extends.clone();
        files.insert(current.clone(), source.clone());
        chain.push(current);
        layers.push(value);
    }

    let mut merged = Value::Mapping(Mapping::new());
    let mut origins = BTreeMap::new();
    for (depth, layer) in layers.into_iter().enumerate().rev() {
        let origin = if depth == 0 {
            Origin::Profile(chain[0].clone())
        } else {
            Origin::Parent(chain[depth].clone())
        };
        merge(&mut merged, layer, "", &origin, &mut origins);
    }
    for o in overrides {
        apply(&mut merged, o, &mut origins)?;
    }
    // Inheritance is resolved: the merged profile extends nothing.
    if let Value::Mapping(m) = &mut merged {
        m.remove("extends");
    }

    let file = files[name].display.clone();
    // An error about the value at `path`, said where that value came from:
    // the `--set` argument, or the file and position that hold it.
    let at = |path: String, message: String, help: Option<String>, path_is_wrong: bool| {
        match nearest_origin(&origins, &path) {
            Some(Origin::Set(arg)) => Error::Set {
                arg,
                help,
                message: format!("`{path}`: {message}"),
                path_is_wrong,
            },
            origin => {
                let source = match &origin {
                    Some(Origin::Profile(n) | Origin::Parent(n)) => &files[n],
                    _ => &files[name],
                };
                let location = SourceMap::new(&source.text).locate(&path).map(|span| {
                    Location::in_source(&source.display, &source.text, span.line, span.column)
                        .with_len(span.len)
                });
                Error::Profile {
                    file: source.display.clone(),
                    help,
                    path,
                    message,
                    location,
                }
            }
        }
    };
    // A key the format replaced (given with --set) is said so.
    if let Some((path, message, help)) = replaced_key(&merged) {
        return Err(at(path, message.to_string(), Some(help.to_string()), true));
    }
    let profile: Profile =
        typed(merged).map_err(|(path, e)| at(path, e.message(), e.help(), e.is_unknown_key()))?;
    Ok(LoadedProfile {
        name: name.to_string(),
        file,
        chain,
        profile,
        origins,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::duration::Duration;

    fn library(files: &[(&str, &str)]) -> Library {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(format!("{name}.yaml")), text).unwrap();
        }
        let mut library = Library::default();
        library.add_profiles_dir(dir.path()).unwrap();
        library
    }

    const BASE: &str = "instance:\n  region: us-east-2\n  types: [g6e.xlarge]\n  tags: {Team: a}\njob:\n  timeout: 120m\nsnippets:\n  deadman: {}\n  pipeline:\n    script: /a.sh\n";

    #[test]
    fn extends_merges_deeply_and_child_wins() {
        let lib = library(&[
            ("base", BASE),
            (
                "child",
                "extends: base\ninstance:\n  types: [g6.xlarge]\n  tags: {Owner: b}\njob:\n  timeout: 30m\nsnippets:\n  pipeline:\n    args: [x]\n",
            ),
        ]);
        let p = load(&lib, "child", &[]).unwrap();
        assert_eq!(p.chain, vec!["child", "base"]);
        assert_eq!(p.profile.instance.region, "us-east-2");
        assert_eq!(p.profile.instance.types, vec!["g6.xlarge"]);
        assert_eq!(p.profile.instance.tags.len(), 2);
        assert_eq!(p.profile.job.timeout, Duration::from_minutes(30));
        assert_eq!(p.origin("job.timeout"), Origin::Profile("child".into()));
        assert_eq!(p.origin("instance.region"), Origin::Parent("base".into()));
        assert_eq!(p.origin("job.grace"), Origin::Default);
        assert_eq!(
            p.origin("snippets.pipeline.script"),
            Origin::Parent("base".into())
        );
        assert_eq!(
            p.origin("snippets.pipeline.args"),
            Origin::Profile("child".into())
        );
        assert_eq!(p.profile.extends, None);
    }

    #[test]
    fn set_overrides_with_types_and_records_origin() {
        let lib = library(&[("base", BASE)]);
        let sets = [
            Override::parse("job.timeout=45m").unwrap(),
            Override::parse("job_id=run-7").unwrap(),
            Override::parse("instance.subnets=[subnet-a, subnet-b]").unwrap(),
        ];
        let p = load(&lib, "base", &sets).unwrap();
        assert_eq!(p.profile.job.timeout.seconds(), 2700);
        assert_eq!(p.profile.job.id, "run-7");
        assert_eq!(p.profile.instance.subnets, vec!["subnet-a", "subnet-b"]);
        assert_eq!(
            p.origin("job.timeout"),
            Origin::Set("job.timeout=45m".into())
        );
    }

    #[test]
    fn set_is_type_checked_like_the_file() {
        let lib = library(&[("base", BASE)]);
        let err = load(
            &lib,
            "base",
            &[Override::parse("job.timeout=soon").unwrap()],
        )
        .unwrap_err();
        assert!(matches!(err, Error::Set { .. }), "{err}");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("job.timeout"), "{err}");

        let err = load(&lib, "base", &[Override::parse("job.timout=5m").unwrap()]).unwrap_err();
        assert!(err.to_string().contains("did you mean `timeout`"), "{err}");

        let err = load(&lib, "base", &[Override::parse("job.timeout.x=5").unwrap()]).unwrap_err();
        assert!(
            err.to_string().contains("is a value, not a section"),
            "{err}"
        );

        assert!(Override::parse("nothing").is_err());
        assert!(Override::parse("a..b=1").is_err());
    }

    #[test]
    fn unknown_keys_are_errors_with_position_and_suggestion() {
        let lib = library(&[("bad", "instance:\n  regoin: us-east-2\n")]);
        let err = load(&lib, "bad", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field `regoin`"), "{text}");
        assert!(text.contains(":2:3"), "{text}");
        assert!(text.contains("did you mean `region`?"), "{text}");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn extends_cycles_and_unknown_parents_are_errors() {
        let lib = library(&[("a", "extends: b\n"), ("b", "extends: a\n")]);
        let err = load(&lib, "a", &[]).unwrap_err();
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            "profiles extend each other in a circle: a -> b -> a"
        );

        let lib = library(&[("a", "extends: bse\n"), ("base", BASE)]);
        let err = load(&lib, "a", &[]).unwrap_err();
        assert!(err.to_string().contains("did you mean `base`?"), "{err}");
    }

    #[test]
    fn yaml_syntax_errors_name_the_file_and_position() {
        let lib = library(&[("bad", "job:\n  timeout: [1\n")]);
        let err = load(&lib, "bad", &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad.yaml"), "{text}");
        assert!(text.contains("-->"), "{text}");
    }

    #[test]
    fn a_second_document_and_a_non_mapping_are_located() {
        for (text, line) in [
            ("job:\n  timeout: 1m\n---\njob: {}\n", 3),
            ("# c\n---\njob: {}\n---\nx: 1\n", 4),
            ("\n# only a list\n- a\n", 3),
        ] {
            let lib = library(&[("m", text)]);
            let err = load(&lib, "m", &[]).unwrap_err();
            let at = format!("m.yaml:{line}:1");
            assert!(err.to_string().contains(&at), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_child_can_drop_a_parent_snippet() {
        let lib = library(&[
            ("base", BASE),
            ("c", "extends: base\nsnippets:\n  deadman: false\n"),
        ]);
        let p = load(&lib, "c", &[]).unwrap();
        assert_eq!(p.profile.snippets["deadman"], Value::Bool(false));
    }
}
