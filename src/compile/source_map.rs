//! Where each value of a YAML file is: logical paths (`job.timeout`,
//! `snippets.efs-mount.mounts[1].fs_id`) to line and column, so that a
//! problem found on parsed values can point at the text that holds it.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A stretch of one line: 1-based line and column, length in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub len: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    key: Option<Span>,
    value: Option<Span>,
    /// Whether the value is a scalar (point at it) or a container (point at its key).
    scalar: bool,
}

/// The positions of one file's values by logical path, and what makes the
/// file more than one mapping: a key given twice, a second document.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    entries: HashMap<String, Entry>,
    /// Whether the text is YAML at all.
    pub parses: bool,
    /// The first key that repeats a key of its own mapping (the repeat).
    pub duplicate: Option<Span>,
    /// The line where a second document starts.
    pub second_document: Option<usize>,
}

impl SourceMap {
    /// Maps `text`; a file that does not parse maps to nothing.
    pub fn new(text: &str) -> SourceMap {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, true).is_err() {
            return SourceMap::default();
        }
        SourceMap {
            entries: builder.entries,
            parses: true,
            duplicate: builder.duplicate,
            second_document: builder.second_document,
        }
    }

    /// The best place to point at for `path`: a scalar value itself, the key
    /// of a mapping or list, or else the nearest enclosing path that is
    /// in the file.
    pub fn locate(&self, path: &str) -> Option<Span> {
        let mut probe = path;
        loop {
            if let Some(e) = self.entries.get(probe) {
                let best = if e.scalar {
                    e.value.or(e.key)
                } else {
                    e.key.or(e.value)
                };
                if best.is_some() {
                    return best;
                }
            }
            let cut = probe.rfind(['.', '['])?;
            probe = &probe[..cut];
        }
    }

    /// The key of `path` itself, when it is a key in the file.
    pub fn key(&self, path: &str) -> Option<Span> {
        self.entries.get(path).and_then(|e| e.key)
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    entries: HashMap<String, Entry>,
    documents: usize,
    duplicate: Option<Span>,
    second_document: Option<usize>,
}

fn span(mark: Marker, text: &str, style: TScalarStyle) -> Span {
    let quotes = matches!(
        style,
        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
    );
    let len = text.lines().next().map_or(0, |l| l.chars().count()) + if quotes { 2 } else { 0 };
    Span {
        line: mark.line(),
        column: mark.col() + 1,
        len: len.max(1),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Builder {
    /// The path of the node about to start, or `None` when it is a key.
    fn node_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key }) => {
                let key = key.take().unwrap_or_default();
                Some(join(path, &key))
            }
            Some(Frame::Seq { path, index }) => {
                *index += 1;
                Some(format!("{path}[{}]", *index - 1))
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if ev == Event::DocumentStart {
            self.documents += 1;
            if self.documents == 2 {
                self.second_document = Some(mark.line());
            }
        }
        // Only the first document is mapped.
        if self.documents > 1 {
            return;
        }
        match ev {
            Event::Scalar(text, style, _, _) => match self.node_path() {
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let full = join(path, &text);
                        let here = span(mark, &text, style);
                        let entry = self.entries.entry(full).or_default();
                        if entry.key.is_some() && path != "?" {
                            self.duplicate.get_or_insert(here);
                        } else {
                            entry.key = Some(here);
                        }
                        *key = Some(text);
                    }
                }
                Some(path) => {
                    let entry = self.entries.entry(path).or_default();
                    entry.value = Some(span(mark, &text, style));
                    entry.scalar = true;
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let Some(path) = self.node_path() else {
                    // A mapping or list used as a key: nothing points there.
                    self.stack.push(Frame::Map {
                        path: "?".to_string(),
                        key: None,
                    });
                    return;
                };
                self.entries.entry(path.clone()).or_default().value = Some(Span {
                    line: mark.line(),
                    column: mark.col() + 1,
                    len: 1,
                });
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "job:\n  timeout: 120m\nsnippets:\n  efs-mount:\n    mounts:\n      - fs_id: fs-1\n        path: '/app'\n  pipeline: {args: [a, b]}\n";

    #[test]
    fn scalars_point_at_their_value() {
        let map = SourceMap::new(TEXT);
        assert_eq!(
            map.locate("job.timeout"),
            Some(Span {
                line: 2,
                column: 12,
                len: 4
            })
        );
        assert_eq!(
            map.locate("snippets.efs-mount.mounts[0].path"),
            Some(Span {
                line: 7,
                column: 15,
                len: 6
            })
        );
        assert_eq!(
            map.locate("snippets.pipeline.args[1]"),
            Some(Span {
                line: 8,
                column: 24,
                len: 1
            })
        );
    }

    #[test]
    fn containers_point_at_their_key_and_missing_paths_at_the_nearest() {
        let map = SourceMap::new(TEXT);
        assert_eq!(
            map.locate("snippets.efs-mount"),
            Some(Span {
                line: 4,
                column: 3,
                len: 9
            })
        );
        assert_eq!(
            map.locate("job.grace"),
            Some(Span {
                line: 1,
                column: 1,
                len: 3
            })
        );
        assert_eq!(
            map.key("job.timeout"),
            Some(Span {
                line: 2,
                column: 3,
                len: 7
            })
        );
        assert_eq!(map.locate("nothing.here"), None);
    }

    #[test]
    fn broken_yaml_maps_to_nothing() {
        let map = SourceMap::new("a: [1\n");
        assert_eq!(map.locate("a"), None);
        assert!(!map.parses);
    }

    #[test]
    fn repeated_keys_and_second_documents_are_found() {
        let map = SourceMap::new("a:\n  b: 1\n  c: 2\n  b: 3\nl:\n  - {b: 1}\n  - {b: 2}\n");
        assert_eq!(
            map.duplicate,
            Some(Span {
                line: 4,
                column: 3,
                len: 1
            })
        );
        assert_eq!(map.second_document, None);
        let map = SourceMap::new("a:\n  b: 1\nl:\n  - {b: 1}\n  - {b: 2}\n");
        assert_eq!(map.duplicate, None);
        let map = SourceMap::new("# c\n---\na: 1\n---\na: 2\nb: 1\n");
        assert_eq!(map.second_document, Some(4));
        assert_eq!(
            map.duplicate, None,
            "keys of another document are not repeats"
        );
        assert_eq!(map.locate("b"), None, "only the first document is mapped");
        assert!(map.parses);
    }
}
