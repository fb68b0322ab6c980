//! Renders diagnostics: `human` (miette: the source line and a caret), `json` (the
//! shape DESIGN.md gives) and `github` (workflow-command annotations).

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Severity};

/// Renders one diagnostic the way rustc does: header, source snippet, caret, help.
pub fn human(diagnostic: &Diagnostic, color: bool) -> String {
    let severity = match diagnostic.severity {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
    };
    let mut report =
        MietteDiagnostic::new(diagnostic.message.clone()).with_code(diagnostic.code).with_severity(severity);
    let span = diagnostic.span;
    let label = diagnostic.label.clone().unwrap_or_else(|| "here".to_string());
    report = report.with_label(LabeledSpan::new(Some(label), span.start, span.len()));
    if let Some(help) = &diagnostic.help {
        report = report.with_help(help.clone());
    }
    let source = NamedSource::new(diagnostic.source.name.clone(), diagnostic.source.text.clone());
    let report = Report::new(report).with_source_code(source);
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_context_lines(1);
    let mut out = String::new();
    handler.render_report(&mut out, report.as_ref()).expect("rendering into a String cannot fail");
    out
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
            code: d.code,
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
