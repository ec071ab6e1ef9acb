//! Durations as profiles write them: `90s`, `120m`, `2h`, `1h30m`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A whole number of seconds, written with units.
///
/// ```
/// use bootforge::Duration;
/// let d: Duration = "1h30m".parse().unwrap();
/// assert_eq!(d.seconds(), 5400);
/// assert_eq!(d.to_string(), "90m");
/// assert!("120".parse::<Duration>().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(u64);

impl Duration {
    pub const fn from_seconds(seconds: u64) -> Duration {
        Duration(seconds)
    }

    pub const fn from_minutes(minutes: u64) -> Duration {
        Duration(minutes * 60)
    }

    pub const fn seconds(self) -> u64 {
        self.0
    }
}

/// The longest a duration may be: a week is far past any one-shot job.
const MAX_SECONDS: u64 = 7 * 24 * 3600;

/// Seconds in `text`, a number with a unit (`90s`, `120m`, `2h`, `7d`,
/// `1h30m`), of any length.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    let wrong = || {
        format!(
            "{text:?} is not a duration: write a number with a unit, like 90s, 120m, 2h or 1h30m"
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(wrong()),
        };
        let n: u64 = digits.parse().map_err(|_| wrong())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(wrong)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(wrong());
    }
    Ok(total)
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let total = parse_seconds(text)?;
        if total > MAX_SECONDS {
            return Err(format!(
                "{text:?} is longer than a week; a one-shot job needs less"
            ));
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s > 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s > 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration with a unit, like 90s, 120m or 2h")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "{v} has no unit: write {v}m for minutes or {v}s for seconds"
                )))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "{v} is not a duration: write one like 90s, 120m or 2h"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!("90s".parse::<Duration>().unwrap().seconds(), 90);
        assert_eq!("2h".parse::<Duration>().unwrap().seconds(), 7200);
        assert_eq!("1h30m15s".parse::<Duration>().unwrap().seconds(), 5415);
        assert_eq!("0s".parse::<Duration>().unwrap().seconds(), 0);
        for bad in [
            "",
            "m",
            "5",
            "5x",
            "1.5h",
            "-3m",
            "99999999999999999999h",
            "8d",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shows_the_largest_exact_unit() {
        assert_eq!(Duration(7200).to_string(), "2h");
        assert_eq!(Duration(5400).to_string(), "90m");
        assert_eq!(Duration(61).to_string(), "61s");
        assert_eq!(Duration(0).to_string(), "0s");
    }

    #[test]
    fn a_bare_number_asks_for_a_unit() {
        let err = serde_yaml_ng::from_str::<Duration>("120")
            .unwrap_err()
            .to_string();
        assert!(err.contains("write 120m for minutes"), "{err}");
    }
}
