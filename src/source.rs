//! A loaded pipeline file: its display name, its text, and the conversion from byte
//! offsets to the 1-based line and column that every diagnostic reports.

use std::sync::Arc;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end: end.max(start) }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The text of one pipeline file and where it came from.
#[derive(Debug)]
pub struct Source {
    /// The name shown in diagnostics: the path as the user gave it, or
    /// `<builtin>/name.yaml` for the catalog compiled into the binary.
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
    /// Every character is one byte: a column is a byte count.
    ascii: bool,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let ascii = text.is_ascii();
        Arc::new(Source { name: name.into(), text, line_starts, ascii })
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        (line + 1, column)
    }

    /// The byte offset of a 1-based line and a 0-based column counted in characters.
    pub fn offset_of(&self, line: usize, col_chars: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        if self.ascii {
            // One byte per character: no need to walk the line.
            return (start + col_chars).min(self.text.len());
        }
        let rest = &self.text[start..];
        rest.char_indices().nth(col_chars).map_or(self.text.len(), |(i, _)| start + i)
    }

    /// Finds `needle` inside `within`, for positioning something found inside a scalar
    /// (a template variable, a template syntax error) at its own line and column.
    pub fn find_in(&self, within: Span, needle: &str) -> Option<Span> {
        if needle.is_empty() {
            return None;
        }
        let end = within.end.min(self.text.len());
        let start = within.start.min(end);
        self.text[start..end].find(needle).map(|i| Span::new(start + i, start + i + needle.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let s = Source::new("x.yaml", "ab\nçd: e\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        // `ç` is two bytes but one column.
        assert_eq!(s.line_col(6), (2, 3));
        assert_eq!(s.offset_of(2, 2), 6);
        let ascii = Source::new("y.yaml", "ab\ncd: e\n");
        assert_eq!(ascii.offset_of(2, 2), 5);
    }

    #[test]
    fn find_in_stays_inside_the_span() {
        let s = Source::new("x.yaml", "a: foo\nb: foo\n");
        let second = Span::new(7, 13);
        assert_eq!(s.find_in(second, "foo"), Some(Span::new(10, 13)));
        assert_eq!(s.find_in(Span::new(0, 2), "foo"), None);
    }
}
