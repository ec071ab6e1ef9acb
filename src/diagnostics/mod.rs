//! The ground floor: the one error type every stage returns, the catalogue
//! of its wording, where in a file a problem is and how that reads. It
//! imports no stage, so every stage can use it.
//!
//! - [`error`]: the enum of every problem, its exit code, code, severity
//!   and location;
//! - [`wording`]: each variant's message and help, side by side;
//! - [`location`] and [`render`]: a place in a source file, and the line
//!   with carets under it;
//! - [`kinds`]: severities, AWS id kinds, YAML problem kinds;
//! - [`suggest`]: "did you mean".

mod error;
mod kinds;
mod location;
mod render;
mod suggest;
mod wording;

pub use self::error::{Chosen, Error, QUOTA_EXIT, Result};
pub use self::kinds::{IdKind, Severity, YamlKind};
pub use self::location::Location;
pub(crate) use self::location::set_location;
pub use self::suggest::did_you_mean;
