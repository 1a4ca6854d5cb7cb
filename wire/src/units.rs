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

/// The number at the start of `text` and the unit after it (trimmed).
fn split<'a>(text: &'a str, what: &'static str) -> Result<(u64, &'a str), UnitError> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    let n = number.parse().map_err(|_| UnitError::Malformed {
        text: text.to_string(),
        what,
    })?;
    Ok((n, unit.trim()))
}

/// A size in bytes: a number with an optional unit B, KiB, MiB, GiB or TiB.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let (n, unit) = split(text, "a size like 8GiB, 64MiB or 4096")?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(UnitError::Unit {
                text: text.trim().to_string(),
                unit: other.to_string(),
                known: "B, KiB, MiB, GiB or TiB",
            });
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| UnitError::TooLarge(text.trim().to_string()))
}

/// A duration: a number followed by s, m, h or d.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (n, unit) = split(text, "a duration like 30s, 15m, 2h or 7d")?;
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(UnitError::Unit {
                text: text.trim().to_string(),
                unit: other.to_string(),
                known: "s, m, h or d",
            });
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| UnitError::TooLarge(text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
