//! The small vocabularies diagnostics are made of: how bad a problem is,
//! which kind of AWS id is wrong, and what is wrong with a YAML file.

use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// The kinds of AWS ids a profile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Ami,
    Subnet,
    SecurityGroup,
    KeyPair,
    Account,
    InstanceType,
    Role,
}

/// What is wrong with a YAML file, decided where the problem arises (the
/// text's structure, or the serde call that refused the shape: see
/// `compile::parse`), never from a message's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlKind {
    /// It does not parse.
    Syntax,
    /// A key the format does not have.
    UnknownKey,
    /// A key given twice in one mapping.
    DuplicateKey,
    /// A value of the wrong type or out of its range.
    WrongType,
}

impl YamlKind {
    pub fn code(self) -> &'static str {
        match self {
            YamlKind::Syntax => "yaml-syntax",
            YamlKind::UnknownKey => "unknown-key",
            YamlKind::DuplicateKey => "yaml-duplicate-key",
            YamlKind::WrongType => "wrong-type",
        }
    }
}
