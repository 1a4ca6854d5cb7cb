//! Lower-case hexadecimal, the printable form of every id.

use std::fmt;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Why a string is not the hex form of a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string has the wrong number of digits for the value.
    #[error("expected {expected} hex digits, got {got}")]
    Length {
        /// Digits the value needs.
        expected: usize,
        /// Digits the string has.
        got: usize,
    },
    /// A character is not a hex digit.
    #[error("invalid hex digit {found:?} at position {position}")]
    Digit {
        /// The offending character.
        found: char,
        /// Its index in the string, counted in characters.
        position: usize,
    },
}

/// Writes `bytes` as lower-case hex into `f`.
pub fn encode_hex(bytes: &[u8], f: &mut impl fmt::Write) -> fmt::Result {
    for b in bytes {
        f.write_char(char::from(DIGITS[usize::from(b >> 4)]))?;
        f.write_char(char::from(DIGITS[usize::from(b & 0x0f)]))?;
    }
    Ok(())
}

/// Parses exactly `out.len() * 2` hex digits (either case) into `out`.
pub fn decode_hex(s: &str, out: &mut [u8]) -> Result<(), HexError> {
    let expected = out.len() * 2;
    let got = s.chars().count();
    if got != expected {
        return Err(HexError::Length { expected, got });
    }
    // The length check above counted chars; all valid digits are ASCII, so any
    // multi-byte char is reported by `nibble` before the byte indexing can drift.
    let mut chars = s.chars().enumerate();
    for byte in out.iter_mut() {
        let hi = next_nibble(&mut chars)?;
        let lo = next_nibble(&mut chars)?;
        *byte = (hi << 4) | lo;
    }
    Ok(())
}

fn next_nibble(chars: &mut impl Iterator<Item = (usize, char)>) -> Result<u8, HexError> {
    let (position, c) = chars
        .next()
        .expect("invariant: the caller checked the digit count");
    let value = c
        .to_digit(16)
        .ok_or(HexError::Digit { found: c, position })?;
    Ok(u8::try_from(value).expect("invariant: a hex digit is below 16"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_input() {
        let mut s = String::new();
        encode_hex(&[0x00, 0xab, 0xff], &mut s).expect("writing to a String cannot fail");
        assert_eq!(s, "00abff");
        let mut out = [0u8; 3];
        decode_hex("00ABff", &mut out).expect("valid hex");
        assert_eq!(out, [0x00, 0xab, 0xff]);
        assert_eq!(
            decode_hex("00ab", &mut out),
            Err(HexError::Length {
                expected: 6,
                got: 4
            })
        );
        assert_eq!(
            decode_hex("00abfg", &mut out),
            Err(HexError::Digit {
                found: 'g',
                position: 5
            })
        );
        assert!(matches!(
            decode_hex("00abfé", &mut out),
            Err(HexError::Digit { found: 'é', .. })
        ));
    }
}
