//! Phases: the built-in ones in their canonical order, and a pipeline's extra phases
//! slotted in after the phase they name.

pub(crate) const QUEUED: &str = "QUEUED";
pub(crate) const ACTIVE: &str = "ACTIVE";
pub(crate) const FAILED: &str = "FAILED";

/// The built-in phases in canonical order (FAILED is terminal and sorts last).
pub(crate) const BUILTIN: &[&str] = &[
    QUEUED,
    "PULLING_SOURCE",
    "BUILDING",
    "COPYING_FILES",
    "CREATING_SYMLINKS",
    "UPDATING_ROUTES",
    "HEALTH_CHECK",
    ACTIVE,
    FAILED,
];

/// The phases a pipeline may use, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PhaseOrder {
    names: Vec<String>,
}

impl Default for PhaseOrder {
    fn default() -> Self {
        PhaseOrder { names: BUILTIN.iter().map(|s| s.to_string()).collect() }
    }
}

impl PhaseOrder {
    /// Inserts `name` right after `after` (and after any extra phase already placed
    /// there). Returns false when `after` is unknown.
    pub(crate) fn insert_after(&mut self, name: &str, after: &str) -> bool {
        let Some(mut at) = self.position(after) else { return false };
        at += 1;
        while at < self.names.len() && !BUILTIN.contains(&self.names[at].as_str()) {
            at += 1;
        }
        self.names.insert(at, name.to_string());
        true
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + Clone {
        self.names.iter().map(String::as_str)
    }
}

/// Phase names are UPPER_SNAKE_CASE.
pub(crate) fn is_valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_phases_slot_in_after_their_anchor_in_declaration_order() {
        let mut order = PhaseOrder::default();
        assert!(order.insert_after("MIGRATING_DATABASE", "BUILDING"));
        assert!(order.insert_after("WARMING_CACHE", "BUILDING"));
        assert!(!order.insert_after("X", "NOPE"));
        let names: Vec<_> = order.names().collect();
        assert_eq!(&names[2..6], &["BUILDING", "MIGRATING_DATABASE", "WARMING_CACHE", "COPYING_FILES"]);
    }
}
