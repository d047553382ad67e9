//! Kubernetes resource quantities (`"500m"`, `"1.5Gi"`, `"1e3"`) parsed exactly as
//! apimachinery's `resource.ParseQuantity` does.
//!
//! Owns: the grammar, the suffix tables, rounding and range. Must not know which resource a
//! quantity belongs to; callers convert to milli-units (cpu) or units (bytes).
//!
//! Grammar (upstream `quantity.go`):
//! `<quantity> ::= <sign>? <digits>? ("." <digits>?)? <suffix>` with suffixes
//! `n u m "" k M G T P E` (decimal SI), `Ki Mi Gi Ti Pi Ei` (binary SI), or `e<int>` /
//! `E<int>` (decimal exponent, |exponent| <= 2^31-1). No whitespace anywhere.
//!
//! Like upstream, a value is kept exact down to 1n (10^-9); anything finer is rounded away
//! from zero to the next nano, so a non-zero request never becomes zero. Upstream quirks kept
//! on purpose so that a manifest means the same here as in a cluster: `"."`, `"-"`, `"+."`
//! parse as zero, `"1."` is 1 and `"1.G"` is 10^9.
//!
//! **Departure from upstream:** magnitudes above 2^63-1 units are refused with
//! [`QuantityError`]. Upstream silently caps some of them (`"9Ei"` becomes
//! 9223372036854775807) and keeps others that no int64 accessor can return (`"12E"`); a
//! limit that is silently changed is worse than a pod that is refused.

use std::cmp::Ordering;
use std::fmt;

/// 10^9: nano-units per unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// 10^6: nano-units per milli-unit.
const NANOS_PER_MILLI: i128 = 1_000_000;
/// The largest magnitude upstream represents: 2^63-1 units, here in nano-units.
const MAX_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;
/// Decimal digits of `MAX_NANOS` (9223372036854775807000000000).
const MAX_NANOS_DIGITS: usize = 28;

/// Why a quantity string was refused. Displayed together with the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityErrorKind {
    /// The empty string.
    Empty,
    /// Not `<sign><number><suffix>`: stray characters, whitespace, two points.
    Format,
    /// The suffix is none of the known ones (for example `K`, `mi`, `i`).
    Suffix,
    /// A decimal exponent outside ±(2^31-1), as upstream refuses.
    Exponent,
    /// Larger in magnitude than 2^63-1 units (upstream would silently cap it).
    TooLarge,
    /// Fits as a quantity, but not as the 64-bit milli-value or value asked for.
    Overflow,
}

impl fmt::Display for QuantityErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty quantity",
            Self::Format => {
                "quantities must match the regular expression \
                 '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            }
            Self::Suffix => "unable to parse quantity's suffix",
            Self::Exponent => "the decimal exponent is outside ±2147483647",
            Self::TooLarge => "the magnitude is larger than 9223372036854775807 units",
            Self::Overflow => "the value does not fit in a signed 64-bit integer",
        })
    }
}

/// A quantity that could not be used, naming the value as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity {value:?}: {kind}")]
pub struct QuantityError {
    /// The string as it appeared in the manifest (truncated to 64 characters).
    pub value: String,
    pub kind: QuantityErrorKind,
}

impl QuantityError {
    fn new(value: &str, kind: QuantityErrorKind) -> Self {
        // Manifests are operator input, but an error message should stay a line long.
        let value: String = value.chars().take(64).collect();
        QuantityError { value, kind }
    }
}

/// The exact value of a quantity, in nano-units (10^-9), rounded as upstream rounds.
///
/// Comparisons and sums are exact, as upstream's `Quantity.Cmp`/`Add` are; conversion to
/// milli-units or units rounds away from zero, as `MilliValue()`/`Value()` do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuantityValue {
    nanos: i128,
}

impl QuantityValue {
    pub const ZERO: QuantityValue = QuantityValue { nanos: 0 };

    /// Parses a quantity string exactly like apimachinery's `ParseQuantity` (see the module
    /// doc for the one departure).
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        parse(s).map_err(|kind| QuantityError::new(s, kind))
    }

    /// A value of `units` whole units.
    pub fn from_units(units: i64) -> Self {
        QuantityValue {
            nanos: i128::from(units) * NANOS_PER_UNIT,
        }
    }

    /// A value of `milli` thousandths.
    pub fn from_milli(milli: i64) -> Self {
        QuantityValue {
            nanos: i128::from(milli) * NANOS_PER_MILLI,
        }
    }

    /// The exact value in nano-units.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }

    pub fn is_positive(self) -> bool {
        self.nanos > 0
    }

    /// Thousandths, rounded away from zero (upstream `MilliValue`); `None` past `i64`.
    pub fn milli_value(self) -> Option<i64> {
        i64::try_from(div_away_from_zero(self.nanos, NANOS_PER_MILLI)).ok()
    }

    /// Whole units, rounded away from zero (upstream `Value`); `None` past `i64`.
    pub fn value(self) -> Option<i64> {
        i64::try_from(div_away_from_zero(self.nanos, NANOS_PER_UNIT)).ok()
    }

    /// Exact sum; saturates far beyond any value a quantity can hold (pods × 2^63 units).
    pub fn saturating_add(self, other: Self) -> Self {
        QuantityValue {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }
}

/// Parses `s` and converts it to thousandths (the unit of cpu), naming `s` in any error.
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    QuantityValue::parse(s)?
        .milli_value()
        .ok_or_else(|| QuantityError::new(s, QuantityErrorKind::Overflow))
}

/// Parses `s` and converts it to whole units (bytes for memory), naming `s` in any error.
pub fn parse_units(s: &str) -> Result<i64, QuantityError> {
    QuantityValue::parse(s)?
        .value()
        .ok_or_else(|| QuantityError::new(s, QuantityErrorKind::Overflow))
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    match (n % d).cmp(&0) {
        Ordering::Greater => q + 1,
        Ordering::Less => q - 1,
        Ordering::Equal => q,
    }
}

/// How the suffix scales the number.
enum Scale {
    /// × 10^exp
    Decimal(i64),
    /// × 2^exp
    Binary(u32),
}

/// Upstream's suffix tables plus the `e<int>` form (`suffixHandler.interpret`).
fn interpret_suffix(suffix: &str) -> Result<Scale, QuantityErrorKind> {
    Ok(match suffix {
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "" => Scale::Decimal(0),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        _ => {
            let Some(exp) = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .filter(|rest| !rest.is_empty())
            else {
                return Err(QuantityErrorKind::Suffix);
            };
            // Go's strconv.ParseInt: optional sign, then digits only.
            let exp: i64 = exp.parse().map_err(|_| QuantityErrorKind::Suffix)?;
            if exp.unsigned_abs() > i32::MAX as u64 {
                return Err(QuantityErrorKind::Exponent);
            }
            Scale::Decimal(exp)
        }
    })
}

/// The pieces of a quantity string, split as upstream's `parseQuantityString` splits them.
struct Parts<'a> {
    negative: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

fn split(s: &str) -> Result<Parts<'_>, QuantityErrorKind> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut negative = false;
    match b.first() {
        Some(b'-') => {
            negative = true;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    // Leading zeros are dropped; a string of only sign and zeros is zero.
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos == end {
        return Ok(Parts {
            negative,
            num: "",
            denom: "",
            suffix: "",
        });
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[num_start..pos];
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[denom_start..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos != end {
        return Err(QuantityErrorKind::Format);
    }
    Ok(Parts {
        negative,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

fn parse(s: &str) -> Result<QuantityValue, QuantityErrorKind> {
    if s.is_empty() {
        return Err(QuantityErrorKind::Empty);
    }
    let parts = split(s)?;
    let scale = interpret_suffix(parts.suffix)?;

    // The significant digits, as a big decimal integer, most significant first.
    let mut digits: Vec<u8> = parts
        .num
        .bytes()
        .chain(parts.denom.bytes())
        .skip_while(|&d| d == b'0')
        .map(|d| d - b'0')
        .collect();
    if digits.is_empty() {
        return Ok(QuantityValue::ZERO);
    }
    // value = digits × 10^exp10 × 2^exp2; in nano-units the decimal exponent grows by 9.
    let denom_len = i64::try_from(parts.denom.len()).map_err(|_| QuantityErrorKind::TooLarge)?;
    let exp10 = match scale {
        Scale::Decimal(e) => e - denom_len + 9,
        Scale::Binary(e2) => {
            for _ in 0..e2 / 10 {
                mul_small(&mut digits, 1024);
            }
            9 - denom_len
        }
    };

    let (int_digits, inexact) = if exp10 >= 0 {
        // Appending exp10 zeros must stay within the 28 digits of the maximum.
        let zeros = usize::try_from(exp10).map_err(|_| QuantityErrorKind::TooLarge)?;
        if digits.len().saturating_add(zeros) > MAX_NANOS_DIGITS {
            return Err(QuantityErrorKind::TooLarge);
        }
        digits.resize(digits.len() + zeros, 0);
        (&digits[..], false)
    } else {
        let drop = usize::try_from(exp10.unsigned_abs()).unwrap_or(usize::MAX);
        let keep = digits.len().saturating_sub(drop);
        let inexact = digits[keep..].iter().any(|&d| d != 0);
        (&digits[..keep], inexact)
    };
    if int_digits.len() > MAX_NANOS_DIGITS {
        return Err(QuantityErrorKind::TooLarge);
    }
    let mut nanos: i128 = 0;
    for &d in int_digits {
        nanos = nanos * 10 + i128::from(d);
    }
    // Upstream rounds any remainder below 1n up (away from zero) to the next nano.
    if inexact {
        nanos += 1;
    }
    if nanos > MAX_NANOS {
        return Err(QuantityErrorKind::TooLarge);
    }
    Ok(QuantityValue {
        nanos: if parts.negative { -nanos } else { nanos },
    })
}

/// `digits *= m` for a big decimal integer (most significant digit first).
fn mul_small(digits: &mut Vec<u8>, m: u32) {
    let mut carry: u32 = 0;
    for d in digits.iter_mut().rev() {
        let v = u32::from(*d) * m + carry;
        *d = (v % 10) as u8;
        carry = v / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(s: &str) -> i128 {
        match QuantityValue::parse(s) {
            Ok(q) => q.nanos(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    const G: i128 = NANOS_PER_UNIT;

    /// Upstream `TestQuantityParse`: each input and its exact value (mantissa × 10^exp).
    #[test]
    fn upstream_parse_table() {
        let table: &[(&str, i128)] = &[
            ("0", 0),
            ("0n", 0),
            ("0u", 0),
            ("0m", 0),
            ("0Ki", 0),
            ("0k", 0),
            ("0Mi", 0),
            ("0M", 0),
            ("0Gi", 0),
            ("0G", 0),
            ("0Ti", 0),
            ("0T", 0),
            ("1", G),
            ("1Ki", 1024 * G),
            ("8Ki", 8 * 1024 * G),
            ("7Mi", 7 * (1 << 20) * G),
            ("6Gi", 6 * (1 << 30) * G),
            ("5Ti", 5 * (1 << 40) * G),
            ("4Pi", 4 * (1 << 50) * G),
            ("3Ei", 3 * (1 << 60) * G),
            ("10Ti", 10 * (1 << 40) * G),
            ("100Ti", 100 * (1 << 40) * G),
            ("5n", 5),
            ("4u", 4_000),
            ("3m", 3_000_000),
            ("9", 9 * G),
            ("8k", 8_000 * G),
            ("50k", 50_000 * G),
            ("7M", 7_000_000 * G),
            ("6G", 6_000_000_000 * G),
            ("5T", 5 * 10i128.pow(12) * G),
            ("40T", 4 * 10i128.pow(13) * G),
            ("300T", 3 * 10i128.pow(14) * G),
            ("2P", 2 * 10i128.pow(15) * G),
            ("1E", 10i128.pow(18) * G),
            ("1E-3", 1_000_000),
            ("1e3", 1_000 * G),
            ("1E6", 10i128.pow(6) * G),
            ("1e9", 10i128.pow(9) * G),
            ("1E12", 10i128.pow(12) * G),
            ("1e15", 10i128.pow(15) * G),
            ("1E18", 10i128.pow(18) * G),
            ("1e14", 10i128.pow(14) * G),
            ("1e13", 10i128.pow(13) * G),
            ("100.035k", 100_035 * G),
            ("0.001", 1_000_000),
            ("0.0005k", 500_000_000),
            ("0.005", 5_000_000),
            ("0.05", 50_000_000),
            ("0.5", 500_000_000),
            ("0.00050k", 500_000_000),
            ("0.00500", 5_000_000),
            ("0.05000", 50_000_000),
            ("0.50000", 500_000_000),
            ("0.5e0", 500_000_000),
            ("0.5e-1", 50_000_000),
            ("0.5e-2", 5_000_000),
            ("10.035M", 10_035_000 * G),
            ("1.2e3", 1_200 * G),
            ("1.3E+6", 1_300_000 * G),
            ("1.40e9", 1_400_000_000 * G),
            ("1.53E12", 153 * 10i128.pow(10) * G),
            ("1.6e15", 16 * 10i128.pow(14) * G),
            ("1.7E18", 17 * 10i128.pow(17) * G),
            ("9.01", 9_010_000_000),
            ("8.1k", 8_100 * G),
            ("7.123456M", 7_123_456 * G),
            ("6.987654321G", 6_987_654_321 * G),
            ("5.444T", 5_444 * 10i128.pow(9) * G),
            ("40.1T", 401 * 10i128.pow(11) * G),
            ("300.2T", 3_002 * 10i128.pow(11) * G),
            ("2.5P", 25 * 10i128.pow(14) * G),
            ("1.01E", 101 * 10i128.pow(16) * G),
            // Things that saturate/round: up to the next nano, never to zero.
            ("3.001n", 4),
            ("1.1E-9", 2),
            ("0.0000000001", 1),
            ("0.0000000005", 1),
            ("0.00000000050", 1),
            ("0.5e-9", 1),
            ("0.9n", 1),
            ("0.00000012345", 124),
            ("0.00000012354", 124),
            // Fractional binary.
            ("100.035Ki", 10_243_584 * G / 100),
            ("0.5Mi", 524_288 * G),
            ("0.05Gi", 536_870_912 * G / 10),
            ("0.025Ti", 274_877_906_944 * G / 10),
            // "Things written by trolls".
            ("0.000000000001Ki", 2),
            (".001", 1_000_000),
            (".0001k", 100_000_000),
            ("1.", G),
            ("1.G", 10i128.pow(9) * G),
        ];
        for &(input, want) in table {
            assert_eq!(nanos(input), want, "{input}");
            assert_eq!(nanos(&format!("+{input}")), want, "+{input}");
            assert_eq!(nanos(&format!("-{input}")), -want, "-{input}");
        }
    }

    /// Upstream `TestParseQuantityString`: lone points and signs are zero.
    #[test]
    fn lone_point_and_sign_are_zero() {
        for s in [".", "-.", "+.", "-", "+", "000", "-0.0"] {
            assert_eq!(nanos(s), 0, "{s}");
        }
    }

    /// Upstream's invalid list, plus suffixes that only look plausible.
    #[test]
    fn upstream_invalid_inputs() {
        let table: &[(&str, QuantityErrorKind)] = &[
            ("", QuantityErrorKind::Empty),
            ("1.1.M", QuantityErrorKind::Format),
            ("1+1.0M", QuantityErrorKind::Format),
            ("0.1mi", QuantityErrorKind::Suffix),
            ("0.1am", QuantityErrorKind::Format),
            ("aoeu", QuantityErrorKind::Format),
            (".5i", QuantityErrorKind::Suffix),
            ("1i", QuantityErrorKind::Suffix),
            ("-3.01i", QuantityErrorKind::Suffix),
            ("-3.01e-", QuantityErrorKind::Suffix),
            ("1e4294967297", QuantityErrorKind::Exponent),
            ("1E-2147483648", QuantityErrorKind::Exponent),
            (" 1", QuantityErrorKind::Format),
            ("1 ", QuantityErrorKind::Format),
            ("1K", QuantityErrorKind::Suffix),
            ("1e", QuantityErrorKind::Suffix),
            ("1Ki5", QuantityErrorKind::Suffix),
            ("1Gb", QuantityErrorKind::Format),
            ("١", QuantityErrorKind::Format),
        ];
        for &(input, kind) in table {
            match QuantityValue::parse(input) {
                Err(e) => assert_eq!(e.kind, kind, "{input}"),
                Ok(v) => panic!("{input:?} parsed as {v:?}"),
            }
        }
    }

    #[test]
    fn exponent_bounds_as_upstream() {
        // ±(2^31-1) is a valid exponent; a huge negative one rounds up to 1n.
        assert_eq!(nanos("1E-2147483647"), 1);
        assert_eq!(
            QuantityValue::parse("1E2147483647").map_err(|e| e.kind),
            Err(QuantityErrorKind::TooLarge)
        );
        assert_eq!(nanos("0e2147483647"), 0);
    }

    /// Upstream caps some of these at 2^63-1 (`9Ei`) and keeps others it cannot convert to
    /// int64 (`12E`, which is in its parse table); ironlet refuses all, naming the value.
    #[test]
    fn magnitudes_past_int64_are_refused() {
        assert_eq!(nanos("9223372036854775807"), MAX_NANOS);
        assert_eq!(nanos("-9223372036854775807"), -MAX_NANOS);
        for s in [
            "12E",
            "9Ei",
            "9223372036854775807Ki",
            "9223372036854775808",
            "9223372036854775807.000000001",
            "1e19",
            "100000000000000000000000000000000000000000",
        ] {
            let err = QuantityValue::parse(s).err();
            assert_eq!(
                err.as_ref().map(|e| e.kind),
                Some(QuantityErrorKind::TooLarge),
                "{s}"
            );
            assert!(err.is_some_and(|e| e.to_string().contains(s)), "{s}");
        }
        // A long string of zeros and digits well inside the range is still exact.
        assert_eq!(nanos("0000000000000000000000000000000000000000001"), G);
        assert_eq!(nanos("1.0000000000000000000000000000000000000000"), G);
        assert_eq!(nanos("0.0000000000000000000000000000000000000001"), 1);
    }

    #[test]
    fn milli_and_unit_conversions_round_up_like_upstream() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("1.0001m"), Ok(2));
        assert_eq!(parse_milli("1n"), Ok(1));
        assert_eq!(parse_milli("-1n"), Ok(-1));
        assert_eq!(parse_units("128Mi"), Ok(128 << 20));
        assert_eq!(parse_units("1G"), Ok(1_000_000_000));
        assert_eq!(parse_units("1.5"), Ok(2));
        assert_eq!(parse_units("100m"), Ok(1));
        assert_eq!(parse_units("9223372036854775807"), Ok(i64::MAX));
        // 2^63-1 cores is a valid quantity but not a 64-bit milli-value.
        let err = parse_milli("9223372036854775807");
        assert_eq!(
            err.as_ref().map_err(|e| e.kind),
            Err(QuantityErrorKind::Overflow)
        );
        assert!(err.is_err_and(|e| e.to_string().contains("9223372036854775807")));
    }

    #[test]
    fn comparison_is_exact() {
        let q = |s: &str| match QuantityValue::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("10000T") > q("100Gi"));
        assert!(q("100m") > q("50m"));
        assert!(q("1.0000001") > q("1"));
    }

    #[test]
    fn error_names_the_value_and_truncates_it() {
        let long = "x".repeat(500);
        let e = QuantityValue::parse(&long).err();
        assert!(e.is_some_and(|e| e.value.len() == 64 && e.kind == QuantityErrorKind::Format));
        let e = QuantityValue::parse("12 cores")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "quantity \"12 cores\": quantities must match the regular expression \
                 '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            )
        );
    }
}
