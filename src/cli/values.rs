//! How flags name the model's words (`--status failed`, `--role deploy`,
//! `--durability full`): the command line's view of types that live below it, so that
//! `clap` stays in the command line. Each value and its help are those the derive
//! gave when the types carried it.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::model::{Role, RunStatus};
use crate::store::Durability;

impl ValueEnum for RunStatus {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Interrupted,
            RunStatus::Cancelled,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &[Role::Read, Role::Deploy, Role::Admin]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl ValueEnum for Durability {
    fn value_variants<'a>() -> &'a [Self] {
        &[Durability::Normal, Durability::Full]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Durability::Normal => {
                PossibleValue::new("normal").help("`synchronous=NORMAL` in WAL mode: survives a killed process")
            }
            Durability::Full => {
                PossibleValue::new("full").help("`synchronous=FULL`: one fsync per commit; survives power loss")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use crate::model::{Role, RunStatus};
    use crate::store::Durability;

    /// Every value a flag accepts names the variant it parses to.
    #[test]
    fn values_round_trip() {
        for status in RunStatus::value_variants() {
            assert_eq!(RunStatus::from_str(status.as_str(), false), Ok(*status));
            assert_eq!(RunStatus::from_str(&status.as_str().to_uppercase(), true), Ok(*status));
        }
        for role in Role::value_variants() {
            assert_eq!(Role::from_str(role.as_str(), false), Ok(*role));
        }
        assert_eq!(Durability::from_str("full", false), Ok(Durability::Full));
        assert_eq!(Durability::from_str("normal", false), Ok(Durability::Normal));
    }
}
