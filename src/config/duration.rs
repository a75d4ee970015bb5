//! Durations in the configuration (`after = "15m"`, `retry_for = "24h"`): read with humantime,
//! written back the way people write them (hours, minutes, seconds; never "1day" or
//! "1h 30m" with spaces), so `config check` shows `24h` for `24h`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// The format named in errors.
pub const EXPECTED: &str = "a duration like 15m, 90s, 1h30m";

/// `d` as `1h30m`, `24h`, `90ms`; `0s` for zero.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        ((secs % 3600) / 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() { "0s".into() } else { text }
}

/// Serde `serialize_with`.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Serde `deserialize_with`: any humantime duration (`15m`, `1h 30m`, `2days`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        humantime::parse_duration(v.trim())
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_people_write_them() {
        for (text, shown) in [
            ("24h", "24h"),
            ("15m", "15m"),
            ("1h30m", "1h30m"),
            ("1h 30m", "1h30m"),
            ("1day", "24h"),
            ("90s", "1m30s"),
            ("1s", "1s"),
            ("250ms", "250ms"),
        ] {
            let d = humantime::parse_duration(text).unwrap();
            assert_eq!(format(d), shown, "{text}");
            assert_eq!(humantime::parse_duration(&format(d)).unwrap(), d);
        }
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
