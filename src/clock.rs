//! The time, as the records keep it: RFC 3339 UTC with milliseconds, and Unix
//! milliseconds for leases. The engine's core has no clock: the driver reads this one
//! and hands the time in with each message.

/// The current time, RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
