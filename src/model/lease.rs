//! How long a lease lasts: a holder that has not renewed its lease for this long is
//! taken for gone. Every process on a database reads it (the engine's holders and
//! fences, the stores' claims), so it lives below both.

/// A heartbeat older than this means the holder (on another machine) is gone: the
/// lease time, unless `PHASED_LEASE_TIME` (a duration: `30s`) says otherwise.
pub const STALE_MS: i64 = 15_000;

/// The lease time in milliseconds: `PHASED_LEASE_TIME`, else [`STALE_MS`]. Every
/// process on a database should agree (a holder heart-beats every second).
pub fn lease_ms() -> i64 {
    static LEASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *LEASE.get_or_init(|| {
        let given = std::env::var("PHASED_LEASE_TIME").ok().filter(|v| !v.trim().is_empty());
        match given.as_deref().map(crate::duration::Duration::parse) {
            Some(Ok(d)) if d.0.as_millis() >= 3_000 => d.0.as_millis() as i64,
            Some(_) => {
                tracing::warn!(given = ?given, "PHASED_LEASE_TIME is not a duration of 3s or more; using 15s.");
                STALE_MS
            }
            None => STALE_MS,
        }
    })
}
