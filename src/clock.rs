//! Time as the launcher and the smoke harness exchange it: seconds since the
//! epoch, and RFC 3339 UTC both ways (tags, status files, `date` output).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-29T01:02:03Z`).
pub fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .to_string()
}

/// An RFC 3339 UTC time (`Z`, fractions allowed) as the time since the epoch.
fn since_epoch(text: &str) -> Option<std::time::Duration> {
    humantime::parse_rfc3339(text.trim())
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
}

/// An RFC 3339 UTC time as seconds since the epoch, fractions included.
pub fn parse_rfc3339_fraction(text: &str) -> Option<f64> {
    since_epoch(text).map(|d| d.as_secs_f64())
}

/// An RFC 3339 UTC time as whole seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    since_epoch(text).map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        for epoch in [0, 951_782_400, 1_795_916_911, 4_102_444_799] {
            assert_eq!(
                parse_rfc3339(&rfc3339(epoch)),
                Some(epoch),
                "{}",
                rfc3339(epoch)
            );
        }
        assert_eq!(rfc3339(1_795_916_911), "2026-11-29T01:48:31Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2026-11-29T01:48:31.250Z"),
            Some(1_795_916_911)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-29 01:48:31",
            "2026-11-29T01:48:31+01:00",
            "x-y-zT1:2:3Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
