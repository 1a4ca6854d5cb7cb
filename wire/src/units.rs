//! Sizes and durations as people write them in configuration files and on the command
//! line: `8GiB`, `64MiB`, `4096`; `30s`, `15m`, `2h`, `7d`. One parser for every crate,
//! so a size means the same in a node's configuration and in a `hive` flag.

use std::time::Duration;

/// Why a size or a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a number followed by a unit.
    #[error("{text:?} is not {what}")]
    Malformed {
        /// The text.
        text: String,
        /// What was expected, with examples.
        what: &'static str,
    },
    /// A unit this parser does not know.
    #[error("{text:?}: unknown unit {unit:?}; use {known}")]
    Unit {
        /// The text.
        text: String,
        /// The unit given.
        unit: String,
        /// The units known.
        known: &'static str,
    },
    /// Too large to represent.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// A number followed by one of `units` (name, scale), as a count of the unit scale 1.
fn parse_scaled(
    text: &str,
    what: &'static str,
    units: &[(&str, u64)],
    known: &'static str,
) -> Result<u64, UnitError> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    let n: u64 = number.parse().map_err(|_| UnitError::Malformed {
        text: text.to_string(),
        what,
    })?;
    let unit = unit.trim();
    let Some(&(_, scale)) = units.iter().find(|(name, _)| *name == unit) else {
        return Err(UnitError::Unit {
            text: text.to_string(),
            unit: unit.to_string(),
            known,
        });
    };
    n.checked_mul(scale)
        .ok_or_else(|| UnitError::TooLarge(text.to_string()))
}

/// A size in bytes: a number with an optional unit B, KiB, MiB, GiB or TiB.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    const UNITS: &[(&str, u64)] = &[
        ("", 1),
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
    ];
    parse_scaled(
        text,
        "a size like 8GiB, 64MiB or 4096",
        UNITS,
        "B, KiB, MiB, GiB or TiB",
    )
}

/// A duration: a number followed by s, m, h or d.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    const UNITS: &[(&str, u64)] = &[("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];
    parse_scaled(
        text,
        "a duration like 30s, 15m, 2h or 7d",
        UNITS,
        "s, m, h or d",
    )
    .map(Duration::from_secs)
}

/// A duration as [`parse_duration`] reads it, in whole seconds: the largest unit that
/// divides it exactly (`90s`, `10m`, `1h`, `90m`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match [("d", 86_400), ("h", 3600), ("m", 60)]
        .iter()
        .find(|(_, unit)| s >= *unit && s.is_multiple_of(*unit))
    {
        Some((name, unit)) => format!("{}{name}", s / unit),
        None => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_as_they_parse() {
        for (secs, text) in [
            (0, "0s"),
            (30, "30s"),
            (90, "90s"),
            (600, "10m"),
            (3600, "1h"),
            (5400, "90m"),
            (172_800, "2d"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn sizes_and_durations_parse_and_say_what_is_wrong() {
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert_eq!(parse_bytes(" 64 MiB "), Ok(64 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(
            parse_bytes("64 parsecs")
                .expect_err("unit")
                .to_string()
                .contains("KiB")
        );
        assert!(
            parse_bytes("lots")
                .expect_err("malformed")
                .to_string()
                .contains("8GiB")
        );
        assert!(parse_duration("5").is_err(), "a duration needs its unit");
        assert!(matches!(
            parse_bytes("99999999999TiB"),
            Err(UnitError::TooLarge(_))
        ));
    }
}
