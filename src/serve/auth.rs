//! API tokens: made here, shown once, stored as their SHA-256 only. A request's token
//! is hashed and looked up; the stored hash is then compared in constant time, so how
//! long a refusal takes says nothing about how close a guess was.

use sha2::{Digest, Sha256};

use crate::store::{Role, Store, StoreError, TokenRow};

/// A new token: `phd_` and 256 random bits (two v4 UUIDs' worth, from the OS).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("phd_{a}{b}")
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request is refused, before anything else is looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or not one of ours: 401.
    Unknown,
    /// A token whose role is too low: 403.
    TooLow { have: Role, need: Role },
}

/// The token of an `Authorization: Bearer <token>` header, if it may do `need`.
pub fn check(store: &dyn Store, header: Option<&str>, need: Role) -> Result<Result<TokenRow, Refusal>, StoreError> {
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Err(Refusal::Unknown));
    };
    let presented = hash(token);
    let Some(row) = store.token_by_hash(&presented)? else { return Ok(Err(Refusal::Unknown)) };
    if !equal_in_constant_time(row.hash.as_bytes(), presented.as_bytes()) {
        return Ok(Err(Refusal::Unknown));
    }
    if row.role < need {
        return Ok(Err(Refusal::TooLow { have: row.role, need }));
    }
    Ok(Ok(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed_one_way() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        assert!(equal_in_constant_time(b"abc", b"abc") && !equal_in_constant_time(b"abc", b"abd"));
        assert!(!equal_in_constant_time(b"abc", b"abcd"));
    }

    #[test]
    fn roles_are_ordered_read_deploy_admin() {
        assert!(Role::Read < Role::Deploy && Role::Deploy < Role::Admin);
    }
}
