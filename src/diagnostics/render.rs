//! How a [`Location`] reads: `--> FILE:LINE:COL`, the line, and carets
//! under what is wrong.

use std::fmt;

use super::Location;

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  --> {}:{}:{}", self.file, self.line, self.column)?;
        if let Some(text) = &self.text {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            write!(f, "\n{pad} |\n{} | {text}\n{pad} | ", self.line)?;
            let width = text.chars().count();
            let at = self.column.saturating_sub(1).min(width);
            let lead: String = text
                .chars()
                .take(at)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let len = self.len.min(width.saturating_sub(at)).max(1);
            write!(f, "{lead}{}", "^".repeat(len))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_points_at_the_column() {
        let loc = Location::in_source("p.yaml", "a: 1\n  bad: x\n", 2, 3);
        assert_eq!(
            loc.to_string(),
            "  --> p.yaml:2:3\n  |\n2 |   bad: x\n  |   ^"
        );
        let loc = loc.with_len(3);
        assert!(loc.to_string().ends_with("  |   ^^^"));
    }
}
