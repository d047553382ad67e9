//! Go-style duration strings ("20s", "1h30m", "1.5s", "500ms"), as used by metav1.Duration in
//! KubeletConfiguration. Owns parsing only; callers decide what a zero duration means.
//!
//! Grammar (Go `time.ParseDuration`, minus the sign): a sequence of `number unit` pairs where
//! number is `digits`, `digits.`, `.digits` or `digits.digits` and unit is one of
//! ns, us, µs (U+00B5), μs (U+03BC), ms, s, m, h; or the lone string "0".
//! A leading sign is rejected: no configuration field wants a negative duration.

use std::time::Duration;

/// Why a duration string was rejected. Display is the reason only; callers add the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty string")]
    Empty,
    #[error("a sign is not allowed")]
    Signed,
    #[error("expected a number before the unit")]
    MissingNumber,
    #[error("missing unit (one of ns, us, µs, ms, s, m, h)")]
    MissingUnit,
    #[error("unknown unit {0:?} (expected one of ns, us, µs, ms, s, m, h)")]
    UnknownUnit(String),
    #[error("too large (Go durations stop at about 292 years)")]
    Overflow,
}

/// Go's limit: durations are an i64 count of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string. See the module documentation for the grammar.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with(['+', '-']) {
        return Err(DurationError::Signed);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (int, r) = rest.split_at(digits(rest));
        let (frac, r) = match r.strip_prefix('.') {
            Some(r) => r.split_at(digits(r)),
            None => ("", r),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(DurationError::MissingNumber);
        }
        let (unit, r) = r.split_at(
            r.find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(r.len()),
        );
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(DurationError::MissingUnit),
            other => return Err(DurationError::UnknownUnit(other.to_owned())),
        };
        let mut whole: u128 = 0;
        for d in int.bytes() {
            whole = whole * 10 + u128::from(d - b'0');
            if whole > MAX_NANOS {
                return Err(DurationError::Overflow);
            }
        }
        // Fraction digits beyond 20 cannot change the nanosecond count of an hour; dropping
        // them keeps `fraction * per_unit` inside u128 (Go truncates likewise).
        let (mut fraction, mut scale) = (0u128, 1u128);
        for d in frac.bytes().take(20) {
            fraction = fraction * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        total = whole
            .checked_mul(per_unit)
            .and_then(|n| n.checked_add(fraction * per_unit / scale))
            .and_then(|n| n.checked_add(total))
            .filter(|n| *n <= MAX_NANOS)
            .ok_or(DurationError::Overflow)?;
        rest = r;
    }
    // total <= i64::MAX, so it fits in u64.
    u64::try_from(total)
        .map(Duration::from_nanos)
        .map_err(|_| DurationError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_go_durations() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("20s", ms(20_000)),
            ("2m", ms(120_000)),
            ("1h30m", ms(5_400_000)),
            ("500ms", ms(500)),
            ("1.5s", ms(1_500)),
            (".5s", ms(500)),
            ("5.s", ms(5_000)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("3µs", Duration::from_micros(3)),
            ("3μs", Duration::from_micros(3)),
            ("3us", Duration::from_micros(3)),
            ("1.0000000001s", Duration::new(1, 0)),
            (
                "0.333333333333333333333333h",
                Duration::from_nanos(1_199_999_999_999),
            ),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        use DurationError::*;
        let cases = [
            ("", Empty),
            ("-1s", Signed),
            ("+1s", Signed),
            ("20", MissingUnit),
            ("00", MissingUnit),
            ("1h30", MissingUnit),
            ("1.5.s", MissingUnit),
            ("s", MissingNumber),
            (".s", MissingNumber),
            ("20x", UnknownUnit("x".into())),
            ("1 s", UnknownUnit(" s".into())),
            ("1S", UnknownUnit("S".into())),
            ("1d", UnknownUnit("d".into())),
            ("3000000h", Overflow),
            ("99999999999999999999999999999999999999999s", Overflow),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Err(want), "{input}");
        }
    }

    #[test]
    fn unknown_unit_message_names_the_unit() {
        let err = parse_duration("20x").unwrap_err().to_string();
        assert!(err.starts_with(r#"unknown unit "x""#), "{err}");
    }
}
