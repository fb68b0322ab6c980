//! Did-you-mean hints.

/// Words longer than this get no did-you-mean.
const MAX_TYPO: usize = 100;

/// `text` as quoted in a message: at most `max` characters (a hostile file's 20 MiB
/// key is not echoed whole).
pub(crate) fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => format!("{}... ({} characters)", &text[..cut], text.chars().count()).into(),
    }
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // No typo is that long, and the distance costs length x length.
    if word.len() > MAX_TYPO {
        return None;
    }
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&word_lower, &c.to_lowercase()), c))
        .filter(|(distance, c)| *distance <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// `did you mean `x`?`, or a list of what is allowed when nothing is close.
pub(crate) fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> Option<String> {
    if let Some(best) = closest(word, candidates.clone()) {
        return Some(format!("did you mean `{best}`?"));
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    if all.is_empty() {
        None
    } else if all.len() <= 12 {
        Some(format!("expected one of {}", list(&all)))
    } else {
        Some(format!("expected one of {}, ... ({} in all)", list(&all[..12]), all.len()))
    }
}

/// `` `a`, `b`, `c` ``
pub(crate) fn list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(closest("dockr.run", ["docker.run", "noop"]), Some("docker.run"));
        assert_eq!(closest("sourc", ["source", "build"]), Some("source"));
        assert_eq!(closest("zzz", ["source", "build"]), None);
        assert_eq!(hint("zzz", ["a", "b"]).unwrap(), "expected one of `a`, `b`");
    }
}
