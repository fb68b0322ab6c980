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

/// The credentials of an `Authorization: Bearer <token>` header. The scheme's name is
/// case-insensitive (RFC 7235): `bearer` and `BEARER` do too.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The token of an `Authorization: Bearer <token>` header, if it may do `need`.
pub fn check(store: &dyn Store, header: Option<&str>, need: Role) -> Result<Result<TokenRow, Refusal>, StoreError> {
    let Some(token) = header.and_then(bearer) else {
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

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "phased_session";

/// How long a dashboard sign-in lasts.
pub const SESSION_HOURS: i64 = 12;

/// The session cookie's value in a request's `Cookie` header, if any.
pub fn session_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether a request comes from a page of this server: its `Origin` is `public` (the
/// server's address as its users reach it, `--public-url`, behind a proxy that
/// rewrites `Host`), or names the host the request was sent to (the browser sets both;
/// a page elsewhere cannot forge them). Without `Origin`, `Sec-Fetch-Site: same-origin`
/// does; without either, it does not.
pub fn same_origin(headers: &axum::http::HeaderMap, public: Option<&str>) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let (Some(origin), Some(public)) = (header("origin"), public)
        && origin.eq_ignore_ascii_case(public.trim_end_matches('/'))
    {
        return true;
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => {
            let origin = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
            origin.is_some_and(|o| o.eq_ignore_ascii_case(host))
        }
        (Some(_), None) => false,
        (None, _) => header("sec-fetch-site") == Some("same-origin"),
    }
}

/// The token of a dashboard session, if it may do `need`.
pub fn check_session(
    store: &dyn Store,
    secret: &str,
    need: Role,
    now_ms: i64,
) -> Result<Result<TokenRow, Refusal>, StoreError> {
    let Some(row) = store.session_token(&hash(secret), now_ms)? else { return Ok(Err(Refusal::Unknown)) };
    if row.role < need {
        return Ok(Err(Refusal::TooLow { have: row.role, need }));
    }
    Ok(Ok(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut map = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; phased_session=xyz ; b=2")]);
        assert_eq!(session_of(&h).as_deref(), Some("xyz"));
        assert_eq!(session_of(&headers(&[("cookie", "phased_sessionx=1")])), None);
        assert_eq!(session_of(&headers(&[("cookie", "phased_session=")])), None);
    }

    fn same_origin_here(headers: &axum::http::HeaderMap) -> bool {
        same_origin(headers, None)
    }

    #[test]
    fn behind_a_proxy_the_public_url_is_the_origin() {
        let h = headers(&[("host", "127.0.0.1:8420"), ("origin", "https://deploy.example.com")]);
        assert!(same_origin(&h, Some("https://deploy.example.com/")));
        assert!(!same_origin(&h, Some("https://other.example.com")));
        assert!(!same_origin(&h, None), "without --public-url, the Host decides");
    }

    #[test]
    fn only_a_page_of_this_server_is_same_origin() {
        let host = ("host", "127.0.0.1:8420");
        assert!(same_origin_here(&headers(&[host, ("origin", "http://127.0.0.1:8420")])));
        assert!(!same_origin_here(&headers(&[host, ("origin", "http://evil.example")])));
        assert!(!same_origin_here(&headers(&[host, ("origin", "http://127.0.0.1:8421")])));
        assert!(!same_origin_here(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin_here(&headers(&[host])), "neither Origin nor Sec-Fetch-Site");
        assert!(same_origin_here(&headers(&[host, ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin_here(&headers(&[host, ("sec-fetch-site", "cross-site")])));
    }

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
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc ", "Bearer\tabc"] {
            assert_eq!(bearer(header), Some("abc"), "{header:?}");
        }
        for header in ["Bearer", "Bearer ", "Basic abc", "Bearerabc", "Token abc", ""] {
            assert_eq!(bearer(header), None, "{header:?}");
        }
    }

    #[test]
    fn roles_are_ordered_read_deploy_admin() {
        assert!(Role::Read < Role::Deploy && Role::Deploy < Role::Admin);
    }
}
