//! Kubernetes resource quantities ("250m", "128Mi", "1G", "1e3"), parsed exactly.
//!
//! A quantity is `<sign><digits>[.<digits>]<suffix>` where the suffix is a
//! binary SI one (`Ki`..`Ei`, powers of 1024), a decimal SI one (`n u m k M G
//! T P E`) or a decimal exponent (`e3`, `E-2`). The number is kept as an exact
//! decimal mantissa, a power of ten and a power of two, so that "0.1" and
//! "100m" compare equal and nothing is lost to floating point.
//!
//! As upstream's `Quantity.Value()` and `MilliValue()`, the integer views round
//! away from zero ("1.5" is 2, "0.1m" is 1 milli). Values beyond `i64` saturate.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a quantity string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is empty: write a number such as \"100m\" or \"128Mi\"")]
    Empty(String),
    #[error(
        "quantity {0:?} does not start with a number: write a number and an optional suffix, such as \"250m\" or \"1Gi\""
    )]
    NoNumber(String),
    #[error(
        "quantity {quantity:?} has an unknown suffix {suffix:?}: use one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3"
    )]
    BadSuffix { quantity: String, suffix: String },
    #[error("quantity {0:?} has too many digits: write it with a suffix, such as \"1Gi\"")]
    TooPrecise(String),
}

/// An exact resource quantity: `mantissa * 10^exp10 * 2^exp2`, with a sign.
/// Equality and order are by value: "1" equals "1000m".
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// Enough significant digits for any real resource amount, and few enough that
/// the arithmetic below stays inside `u128`.
const MAX_DIGITS: usize = 30;
/// Exponents beyond this are zero or saturated anyway.
const MAX_EXP10: i32 = 60;

impl Quantity {
    /// Zero, what a missing request or limit counts as.
    pub const ZERO: Quantity = Quantity {
        negative: false,
        mantissa: 0,
        exp10: 0,
        exp2: 0,
    };

    /// Parses a quantity string as the API server accepts it.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(QuantityError::Empty(input.to_string()));
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = rest.split_at(num_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(QuantityError::NoNumber(input.to_string()));
        }
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_DIGITS {
            return Err(QuantityError::TooPrecise(input.to_string()));
        }
        let mut mantissa: u128 = 0;
        for b in digits.bytes() {
            mantissa = mantissa * 10 + u128::from(b - b'0');
        }
        let frac_len = i32::try_from(frac_part.len())
            .map_err(|_| QuantityError::TooPrecise(input.to_string()))?;
        let bad_suffix = || QuantityError::BadSuffix {
            quantity: input.to_string(),
            suffix: suffix.to_string(),
        };
        let (suffix_exp10, exp2) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            _ => {
                let exp = suffix
                    .strip_prefix('e')
                    .or_else(|| suffix.strip_prefix('E'))
                    .ok_or_else(bad_suffix)?;
                let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad_suffix());
                }
                let e: i32 = exp.parse().map_err(|_| bad_suffix())?;
                if !(-MAX_EXP10..=MAX_EXP10).contains(&e) {
                    return Err(bad_suffix());
                }
                (e, 0)
            }
        };
        Ok(Quantity {
            negative: negative && mantissa != 0,
            mantissa,
            exp10: suffix_exp10 - frac_len,
            exp2,
        })
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// Whether this is above zero.
    pub fn is_positive(&self) -> bool {
        !self.negative && self.mantissa != 0
    }

    /// The value in units, rounded away from zero (upstream's `Value()`).
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// The value in thousandths, rounded away from zero (upstream's `MilliValue()`).
    pub fn milli_value(&self) -> i64 {
        self.scaled(-3)
    }

    /// The value in units of `10^scale`, rounded away from zero and saturated to `i64`.
    pub fn scaled(&self, scale: i32) -> i64 {
        let magnitude = self.magnitude_at(scale);
        let clamped = i64::try_from(magnitude).unwrap_or(i64::MAX);
        if self.negative { -clamped } else { clamped }
    }

    /// |self| / 10^scale, rounded up, saturating at `u128::MAX`.
    fn magnitude_at(&self, scale: i32) -> u128 {
        if self.mantissa == 0 {
            return 0;
        }
        let mut n = self.mantissa;
        for _ in 0..self.exp2 {
            n = match n.checked_mul(2) {
                Some(v) => v,
                None => return u128::MAX,
            };
        }
        let shift = self.exp10 - scale;
        if shift >= 0 {
            for _ in 0..shift {
                n = match n.checked_mul(10) {
                    Some(v) => v,
                    None => return u128::MAX,
                };
            }
            n
        } else {
            let mut div: u128 = 1;
            for _ in 0..(-shift) {
                div = match div.checked_mul(10) {
                    Some(v) => v,
                    // the divisor outgrew anything a nonzero mantissa can be: rounds up to 1
                    None => return 1,
                };
            }
            n.div_ceil(div)
        }
    }

    /// An exact comparison key: the value in units of 10^-9, saturated. Every
    /// suffix the API allows is a whole number of nano-units.
    fn nanos(&self) -> i128 {
        let m = self.magnitude_at(-9);
        let m = i128::try_from(m).unwrap_or(i128::MAX);
        if self.negative { -m } else { m }
    }

    /// The sum of two quantities (used for pod totals), exact to the nano-unit.
    pub fn saturating_add(&self, other: &Quantity) -> Quantity {
        let sum = self.nanos().saturating_add(other.nanos());
        let negative = sum < 0;
        Quantity {
            negative,
            mantissa: sum.unsigned_abs(),
            exp10: -9,
            exp2: 0,
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos() == other.nanos()
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos().cmp(&other.nanos())
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// Prints the value in nano-units when it is not whole: a debugging aid, not
    /// upstream's canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.nanos();
        if nanos % 1_000_000_000 == 0 {
            write!(f, "{}", nanos / 1_000_000_000)
        } else {
            write!(f, "{nanos}n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn values_and_milli_values() {
        // (input, value, milli value)
        let cases: &[(&str, i64, i64)] = &[
            ("0", 0, 0),
            ("1", 1, 1000),
            ("250m", 1, 250),
            ("1500m", 2, 1500),
            ("0.5", 1, 500),
            (".5", 1, 500),
            ("1.", 1, 1000),
            ("+2", 2, 2000),
            ("-1.5", -2, -1500),
            ("128Mi", 134_217_728, 134_217_728_000),
            ("1Gi", 1_073_741_824, 1_073_741_824_000),
            ("1.5Gi", 1_610_612_736, 1_610_612_736_000),
            ("1G", 1_000_000_000, 1_000_000_000_000),
            ("1k", 1000, 1_000_000),
            ("1Ki", 1024, 1_024_000),
            ("1e3", 1000, 1_000_000),
            ("1E3", 1000, 1_000_000),
            ("1e-3", 1, 1),
            ("12e+2", 1200, 1_200_000),
            ("100n", 1, 1),
            ("1u", 1, 1),
            ("0.1m", 1, 1),
            ("1E", 1_000_000_000_000_000_000, i64::MAX),
            ("8Ei", i64::MAX, i64::MAX),
            ("0.000000001", 1, 1),
        ];
        for (input, value, milli) in cases {
            let parsed = q(input);
            assert_eq!(parsed.value(), *value, "value of {input}");
            assert_eq!(parsed.milli_value(), *milli, "milli value of {input}");
        }
    }

    #[test]
    fn exact_comparisons() {
        assert_eq!(q("1").cmp(&q("1000m")), Ordering::Equal);
        assert_eq!(q("0.1").cmp(&q("100m")), Ordering::Equal);
        assert_eq!(q("1Ki").cmp(&q("1024")), Ordering::Equal);
        assert_eq!(q("1G").cmp(&q("1e9")), Ordering::Equal);
        assert!(q("1Gi") > q("1G"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("0"));
        assert!(q("0").is_zero() && !q("0").is_positive());
        assert!(q("-0").is_zero());
        assert!(q("1m").is_positive());
        assert_eq!(q("100m").saturating_add(&q("1.9")), q("2"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            ("   ", "is empty"),
            ("Mi", "does not start with a number"),
            ("-", "does not start with a number"),
            (".", "does not start with a number"),
            ("1.2.3", "does not start with a number"),
            ("1MB", "unknown suffix \"MB\""),
            ("1mi", "unknown suffix \"mi\""),
            ("1e", "unknown suffix \"e\""),
            ("1e+", "unknown suffix \"e+\""),
            ("1e3.5", "unknown suffix"),
            ("1e99999", "unknown suffix"),
            ("1 Gi", "unknown suffix"),
            (
                "1234567890123456789012345678901234567890",
                "too many digits",
            ),
        ];
        for (input, want) in cases {
            let err = Quantity::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }
}
