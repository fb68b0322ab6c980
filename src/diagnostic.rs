//! Diagnostics: what validation found, where, and how to fix it. Every diagnostic is
//! born with a file and a byte span; rendering turns that into `file:line:column`.

pub mod codes;

pub use codes::DiagnosticCode;

use std::fmt;
use std::sync::Arc;

use crate::source::{Source, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem in one file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Its stable code (`unknown-node` in every output), listed in the docs.
    pub code: DiagnosticCode,
    /// A lowercase fragment without a final period; identifiers in backticks.
    pub message: String,
    pub source: Arc<Source>,
    pub span: Span,
    /// Short text under the caret.
    pub label: Option<String>,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: DiagnosticCode, source: &Arc<Source>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            source: Arc::clone(source),
            span,
            label: None,
            help: None,
        }
    }

    pub fn warning(code: DiagnosticCode, source: &Arc<Source>, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Self::error(code, source, span, message) }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The 1-based line and column of the start of the span.
    pub fn line_col(&self) -> (usize, usize) {
        self.source.line_col(self.span.start)
    }

    /// The order diagnostics are reported in: by file, then by position.
    pub fn sort_key(&self) -> (String, usize, usize, &'static str) {
        (self.source.name.clone(), self.span.start, self.span.end, self.code.as_str())
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.line_col();
        write!(f, "{}:{line}:{col}: {}[{}]: {}", self.source.name, self.severity.as_str(), self.code, self.message)
    }
}

/// Sorts diagnostics into report order and drops exact duplicates (the same problem
/// found twice, for instance through two alternatives of a `select`).
pub fn sort_and_dedup(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by_key(|d| d.sort_key());
    diagnostics.dedup_by(|a, b| {
        a.code == b.code && a.span == b.span && a.message == b.message && a.source.name == b.source.name
    });
}
