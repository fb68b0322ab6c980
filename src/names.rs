//! What a name may look like where templates read it: node ids, input names and
//! output names are snake_case identifiers (`{{ nodes.build.outputs.image_id }}`).

/// Lowercase letters, digits and `_`, not starting with a digit.
pub(crate) fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_are_snake_case() {
        for good in ["a", "build_app", "_x", "v2"] {
            assert!(super::is_identifier(good), "{good}");
        }
        for bad in ["", "2x", "Build", "a-b", "a.b", "é"] {
            assert!(!super::is_identifier(bad), "{bad}");
        }
    }
}
