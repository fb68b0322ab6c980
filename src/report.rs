//! Renders diagnostics: `human` (miette: the source line and a caret), `json` (the
//! shape DESIGN.md gives) and `github` (workflow-command annotations).

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, Report};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Severity};

/// A line longer than this is not shown as a snippet (a hostile file may hold a
/// 20 MiB key): the diagnostic is given by its position instead.
const MAX_SNIPPET_LINE: usize = 1000;

/// Renders one diagnostic the way rustc does: header, source snippet, caret, help.
pub fn human(diagnostic: &Diagnostic, color: bool) -> String {
    let Some(window) = Window::around(diagnostic) else { return plain(diagnostic) };
    let severity = match diagnostic.severity {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
    };
    let mut report =
        MietteDiagnostic::new(diagnostic.message.clone()).with_code(diagnostic.code.as_str()).with_severity(severity);
    let span = diagnostic.span;
    let label = diagnostic.label.clone().unwrap_or_else(|| "here".to_string());
    report = report.with_label(LabeledSpan::new(Some(label), span.start, span.len()));
    if let Some(help) = &diagnostic.help {
        report = report.with_help(help.clone());
    }
    let report = Report::new(report).with_source_code(window);
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_context_lines(1);
    let mut out = String::new();
    handler.render_report(&mut out, report.as_ref()).expect("rendering into a String cannot fail");
    out
}

/// `severity[code]: message`, `--> file:line:column`, help: for spans on lines too
/// long to show.
fn plain(d: &Diagnostic) -> String {
    let (line, column) = d.line_col();
    let mut out =
        format!("{}[{}]: {}\n  --> {}:{line}:{column}\n", d.severity.as_str(), d.code, d.message, d.source.name);
    if let Some(help) = &d.help {
        out.push_str(&format!("  help: {help}\n"));
    }
    out
}

/// The lines around a diagnostic's span, for miette to show with their real line
/// numbers: only what is shown is copied, not the whole file for every diagnostic.
struct Window {
    name: String,
    text: String,
    /// Where `text` starts in the file: its byte offset and 0-based line.
    offset: usize,
    first_line: usize,
}

impl Window {
    /// `None` when a line to show is too long for a snippet.
    fn around(d: &Diagnostic) -> Option<Window> {
        let text = &d.source.text;
        let start = d.span.start.min(text.len());
        let end = d.span.end.clamp(start, text.len());
        // One line of context on each side, as the handler is told.
        let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i);
        let first = line_start(start).saturating_sub(1);
        let first = line_start(first.min(text.len()));
        let last = line_end(end);
        let last = if last < text.len() { line_end(last + 1) } else { last };
        let shown = &text[first..last];
        if shown.lines().any(|l| l.len() > MAX_SNIPPET_LINE) {
            return None;
        }
        let first_line = d.source.line_col(first).0 - 1;
        Some(Window { name: d.source.name.clone(), text: shown.to_string(), offset: first, first_line })
    }
}

impl miette::SourceCode for Window {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let local_start = span.offset().saturating_sub(self.offset).min(self.text.len());
        let local = miette::SourceSpan::new(local_start.into(), span.len().min(self.text.len() - local_start));
        let contents = self.text.read_span(&local, before, after)?;
        let shifted = miette::SourceSpan::new((contents.span().offset() + self.offset).into(), contents.span().len());
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            contents.data(),
            shifted,
            contents.line() + self.first_line,
            contents.column(),
            contents.line_count(),
        )))
    }
}

#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: &'a str,
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<&'a str>,
}

impl<'a> From<&'a Diagnostic> for JsonDiagnostic<'a> {
    fn from(d: &'a Diagnostic) -> Self {
        let (line, column) = d.line_col();
        JsonDiagnostic {
            severity: d.severity.as_str(),
            code: d.code.as_str(),
            message: &d.message,
            file: &d.source.name,
            line,
            column,
            help: d.help.as_deref(),
        }
    }
}

/// `::error file=F,line=L,col=C::message` (GitHub Actions workflow commands).
pub fn github(d: &Diagnostic) -> String {
    let (line, col) = d.line_col();
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut message = format!("{} [{}]", d.message, d.code);
    if let Some(help) = &d.help {
        message.push('\n');
        message.push_str(help);
    }
    format!("::{level} file={},line={line},col={col}::{}", escape_property(&d.source.name), escape_data(&message))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A SARIF 2.1.0 log of the diagnostics, for code-scanning dashboards: one run of the
/// tool `phased`, a rule per diagnostic code (what it means and a link to its row of
/// docs/pipeline-format.md), a result per diagnostic with its region
/// (lines and columns from 1, columns in characters).
pub fn sarif(diagnostics: &[Diagnostic]) -> serde_json::Value {
    use serde_json::json;
    let mut rules: Vec<&Diagnostic> = Vec::new();
    for d in diagnostics {
        if !rules.iter().any(|r| r.code == d.code) {
            rules.push(d);
        }
    }
    // A rule says what its code means (the docs' table), never what one of its
    // diagnostics said: the help of a result is in its message.
    let rule_json: Vec<serde_json::Value> = rules
        .iter()
        .map(|d| {
            let described = crate::diagnostic::codes::describe(d.code);
            let meaning = described.map_or_else(|| d.code.as_str().replace('-', " "), |c| c.meaning.to_string());
            let uri = crate::diagnostic::codes::help_uri(d.code.as_str());
            json!({
                "id": d.code.as_str(),
                "name": d.code.as_str().split('-').map(capitalized).collect::<String>(),
                "shortDescription": {"text": meaning},
                "help": {
                    "text": format!("{meaning}; see docs/pipeline-format.md#{}", d.code),
                    "markdown": format!("{meaning}; see [`{}`]({uri})", d.code),
                },
                "helpUri": uri,
                "defaultConfiguration": {"level": level(described.map_or(d.severity, |c| c.severity))},
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            let (line, column) = d.line_col();
            let (end_line, end_column) = d.source.line_col(d.span.end.max(d.span.start));
            let mut message = d.message.clone();
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": rules.iter().position(|r| r.code == d.code),
                "level": level(d.severity),
                "message": {"text": message},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": file_uri(&d.source.name)},
                    "region": {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column},
                }}],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "phased",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rule_json,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// A file name as a URI reference: relative paths stay relative (to the folder the
/// scan ran in), absolute ones become `file://`; reserved characters are escaped.
fn file_uri(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    if name.starts_with('/') { format!("file://{out}") } else { out }
}
