//! The Java tool's way of printing an instant, which its users' scripts read.

use std::time::SystemTime;

/// `2026-11-24T20:01:48.123Z` and epoch milliseconds, as the Java tool prints instants.
pub(crate) fn java_instant(t: SystemTime) -> (String, i64) {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => (
            ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            ts.as_millisecond(),
        ),
        // Out of jiff's range (years past 9999): print something rather than nothing.
        Err(_) => (format!("{t:?}"), 0),
    }
}
