//! `foreach:` of a node: the list it fans out over (an expression on what the node's
//! `if` could read), the name of each item, how many run at once, and what a failed
//! item does.

use super::blocks::Blocks;
use super::scope::Site;
use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::plan::Foreach;
use crate::suggest;
use crate::yaml::{Yaml, YamlValue};

const KEYS: [&str; 4] = ["items", "key", "parallel", "on_failure"];

impl Blocks<'_, '_> {
    pub(super) fn foreach(&mut self, yaml: &Yaml, node: usize) -> Option<Foreach> {
        let (items, key, parallel, on_failure) = match &yaml.value {
            YamlValue::String(_) => (Some(yaml), None, None, None),
            YamlValue::Map(entries) => {
                for (key, _) in entries {
                    if !KEYS.contains(&key.text.as_str()) {
                        self.out.push(
                            Diagnostic::error(
                                DiagnosticCode::UnknownKey,
                                self.source,
                                key.span,
                                format!("unknown key `{}` in `foreach`", key.text),
                            )
                            .with_help_opt(suggest::hint(&key.text, KEYS)),
                        );
                    }
                }
                (yaml.get("items"), yaml.get("key"), yaml.get("parallel"), yaml.get("on_failure"))
            }
            _ => (None, None, None, None),
        };
        let Some(items) = items else {
            self.out.push(
                Diagnostic::error(DiagnosticCode::WrongType, self.source, yaml.span, "`foreach` needs the list it runs the node over")
                    .with_help("write `foreach: \"{{ inputs.hosts }}\"` or `foreach: {items: \"{{ inputs.hosts }}\", parallel: 2}`"),
            );
            return None;
        };
        let items = self.template_of(items, "foreach.items", Site::Foreach(node))?;
        let key = match key {
            Some(k) => Some(self.template_of(k, "foreach.key", Site::Node(node))?),
            None => None,
        };
        let parallel = match parallel.map(|p| (&p.value, p.span)) {
            None => 0,
            Some((YamlValue::Int(n), _)) if *n >= 1 => *n as usize,
            Some((_, span)) => {
                self.out.push(
                    Diagnostic::error(
                        DiagnosticCode::InvalidValue,
                        self.source,
                        span,
                        "`foreach.parallel` must be a whole number, 1 or more",
                    )
                    .with_help("how many items may run at once; leave it out for no bound but `--parallel`"),
                );
                0
            }
        };
        let keep_going = match on_failure.map(|f| (f.as_str(), f.span)) {
            None | Some((Some("fail_fast"), _)) => false,
            Some((Some("continue"), _)) => true,
            Some((_, span)) => {
                self.out.push(
                    Diagnostic::error(
                        DiagnosticCode::InvalidValue,
                        self.source,
                        span,
                        "`foreach.on_failure` is `fail_fast` or `continue`",
                    )
                    .with_help("`fail_fast`: the first failed item fails the run; `continue`: the others finish first"),
                );
                false
            }
        };
        Some(Foreach { items, key, parallel, keep_going })
    }

    /// An expression written as `"{{ ... }}"` (or bare), checked where it stands.
    fn template_of(&mut self, yaml: &Yaml, name: &str, site: Site) -> Option<crate::template::Template> {
        let Some(text) = yaml.as_str() else {
            self.out.push(Diagnostic::error(
                DiagnosticCode::WrongType,
                self.source,
                yaml.span,
                format!("`{name}` must be a template string, found {}", yaml.kind_name()),
            ));
            return None;
        };
        self.expression(text, yaml.span, site)
    }
}
