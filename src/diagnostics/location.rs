//! A place in a source file, and the one way a `--set` argument is shown
//! as if it were a file.

/// A place in a source file, 1-based, with the text of that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// How many characters the carets underline.
    pub len: usize,
    pub text: Option<String>,
}

impl Location {
    /// A location in `source` (the file's contents), keeping the line's text.
    /// A position past the end (a parser's "end of input" after a last line
    /// without a newline) is the end of the last line.
    pub fn in_source(file: &str, source: &str, line: usize, column: usize) -> Location {
        let mut line = line.max(1);
        let mut column = column.max(1);
        let mut text = source.lines().nth(line - 1).map(str::to_string);
        if text.is_none()
            && let Some((i, last)) = source.lines().enumerate().last()
            && i + 1 < line
        {
            line = i + 1;
            column = last.chars().count() + 1;
            text = Some(last.to_string());
        }
        Location {
            file: file.to_string(),
            line,
            column,
            len: 1,
            text,
        }
    }

    /// The same place, underlining `len` characters.
    pub fn with_len(mut self, len: usize) -> Location {
        self.len = len.max(1);
        self
    }
}

/// A `--set` argument shown like a one-line file: the path underlined when
/// the path is wrong, the value otherwise.
pub(crate) fn set_location(arg: &str, path_is_wrong: bool) -> Location {
    let (column, len) = match arg.split_once('=') {
        Some((path, _)) if path_is_wrong => (1, path.chars().count()),
        Some((path, value)) => (path.chars().count() + 2, value.chars().count()),
        None => (1, arg.chars().count()),
    };
    Location::in_source("--set", arg, 1, column).with_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_input_is_the_end_of_the_last_line() {
        let loc = Location::in_source("p.yaml", "a: 1\n  po", 3, 1);
        assert_eq!((loc.line, loc.column), (2, 5));
        assert_eq!(loc.text.as_deref(), Some("  po"));
    }
}
