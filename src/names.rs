//! What a name may look like: where templates read it (node ids, input names and
//! output names are snake_case identifiers: `{{ nodes.build.outputs.image_id }}`), and
//! where it becomes a file or folder name (run ids, node log files): [`path_segment`],
//! the one check every entry point uses.

/// Lowercase letters, digits and `_`, not starting with a digit.
pub(crate) fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The longest run id (it names a log folder and a work folder).
pub(crate) const MAX_RUN_ID: usize = 64;

/// Whether `name` can stand as one file or folder name under a folder of phased's:
/// not empty, at most `max` bytes, not `.` or `..`, no slash, backslash or control character
/// (NUL included). Run ids, node names in log paths and every other name that becomes
/// a path go through it, at every entry point (CLI, API, webhooks).
pub(crate) fn path_segment(what: &str, name: &str, max: usize) -> Result<(), String> {
    let problem = if name.is_empty() {
        "is empty".to_string()
    } else if name == "." || name == ".." {
        format!("`{name}` names a folder, not a new entry")
    } else if name.len() > max {
        format!("is {} bytes long; at most {max}", name.len())
    } else if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\') || c.is_control()) {
        format!(
            "contains {}",
            if c.is_control() { format!("the control character U+{:04X}", c as u32) } else { format!("`{c}`") }
        )
    } else {
        return Ok(());
    };
    Err(format!("{what} {problem}"))
}

/// A run id: [`path_segment`], and only letters, digits, `-`, `_` and `.`.
pub(crate) fn check_run_id(id: &str) -> Result<(), String> {
    path_segment("the run id", id, MAX_RUN_ID)?;
    match id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        Some(c) => Err(format!("the run id contains `{c}`: use letters, digits, `-`, `_` and `.`")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_that_become_paths_stay_one_segment() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "x\ny"] {
            assert!(super::path_segment("name", bad, 64).is_err(), "{bad:?}");
            assert!(super::check_run_id(bad).is_err(), "{bad:?}");
        }
        assert!(super::check_run_id(&"a".repeat(65)).is_err());
        for good in ["deploy-1", "a.b", "...x", "v1.2.3", "0b0c_Z"] {
            assert!(super::check_run_id(good).is_ok(), "{good}");
        }
        assert!(super::path_segment("node", "deploy[eu-1].build", 200).is_ok());
        assert_eq!(super::check_run_id("..").unwrap_err(), "the run id `..` names a folder, not a new entry");
    }

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
