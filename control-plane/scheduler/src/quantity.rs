//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`, `128974848`),
//! parsed from the string k8s-openapi keeps them as.
//!
//! A quantity is a signed decimal number with an optional suffix: a binary
//! SI one (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`), a decimal SI one (`n` `u` `m`
//! `k` `M` `G` `T` `P` `E`) or a decimal exponent (`e3`, `E-2`). The
//! scheduler needs two integer views of it, as upstream's resource helpers
//! do: thousandths (`milli`, for CPU) and units (`value`, for bytes and
//! counts), both rounded up.
//!
//! Pure: no I/O, no Kubernetes types. Parsing never panics; arithmetic
//! saturates at `i64` bounds instead of overflowing.

use std::fmt;

/// A parsed quantity: `sign * digits * 10^exp10 * 1024^exp1024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    digits: u128,
    exp10: i32,
    exp1024: u32,
}

/// Why a quantity string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity {text:?} is invalid: {why}")]
pub struct QuantityError {
    pub text: String,
    pub why: &'static str,
}

/// More significant digits than this are refused rather than rounded.
const MAX_DIGITS: usize = 36;

impl Quantity {
    /// Parses upstream's quantity syntax.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let err = |why| QuantityError {
            text: text.to_string(),
            why,
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if fraction.contains('.') {
            return Err(err("it has more than one decimal point"));
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(err("it has no digits"));
        }
        let all = format!("{whole}{fraction}");
        let significant = all.trim_start_matches('0');
        if significant.len() > MAX_DIGITS {
            return Err(err("it has too many digits"));
        }
        let mut digits: u128 = 0;
        for b in significant.bytes() {
            digits = digits * 10 + u128::from(b - b'0');
        }
        let mut exp10 = -(fraction.len() as i32);
        let mut exp1024 = 0u32;
        match suffix {
            "" => {}
            "Ki" => exp1024 = 1,
            "Mi" => exp1024 = 2,
            "Gi" => exp1024 = 3,
            "Ti" => exp1024 = 4,
            "Pi" => exp1024 = 5,
            "Ei" => exp1024 = 6,
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            other if other.starts_with(['e', 'E']) => {
                let exponent = &other[1..];
                let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("its exponent is not an integer"));
                }
                let e: i32 = exponent
                    .parse()
                    .ok()
                    .filter(|e: &i32| e.abs() <= 100)
                    .ok_or_else(|| err("its exponent is out of range"))?;
                exp10 += e;
            }
            _ => return Err(err("its suffix is unknown")),
        }
        Ok(Quantity {
            negative: negative && digits != 0,
            digits,
            exp10,
            exp1024,
        })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The value in thousandths, rounded up (upstream's `MilliValue`).
    pub fn milli(&self) -> i64 {
        self.scaled(3)
    }

    /// The value in units, rounded up (upstream's `Value`).
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// `ceil(self * 10^k)`, saturating at the i64 bounds.
    fn scaled(&self, k: i32) -> i64 {
        let mut n: u128 = self.digits;
        for _ in 0..self.exp1024 {
            n = n.saturating_mul(1024);
        }
        let e = self.exp10 + k;
        let magnitude: u128 = if e >= 0 {
            let mut n = n;
            for _ in 0..e {
                n = n.saturating_mul(10);
                if n > i64::MAX as u128 {
                    break;
                }
            }
            n
        } else {
            let mut q = n;
            let mut inexact = false;
            for _ in 0..(-e).min(40) {
                inexact |= !q.is_multiple_of(10);
                q /= 10;
            }
            // Rounding up means away from zero for positive values and
            // towards zero for negative ones.
            if inexact && !self.negative { q + 1 } else { q }
        };
        let clamped = magnitude.min(i64::MAX as u128) as i64;
        if self.negative { -clamped } else { clamped }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.milli())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_the_usual_forms() {
        let cases: &[(&str, i64, i64)] = &[
            // text, milli, value
            ("0", 0, 0),
            ("1", 1000, 1),
            ("100m", 100, 1),
            ("1500m", 1500, 2),
            ("0.5", 500, 1),
            (".5", 500, 1),
            ("5.", 5000, 5),
            ("2.25", 2250, 3),
            ("1k", 1_000_000, 1000),
            ("1Ki", 1_024_000, 1024),
            ("128Mi", 134_217_728_000, 134_217_728),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1G", 1_000_000_000_000, 1_000_000_000),
            ("1M", 1_000_000_000, 1_000_000),
            ("2e3", 2_000_000, 2000),
            ("2E3", 2_000_000, 2000),
            ("1e-3", 1, 1),
            ("25e-1", 2500, 3),
            ("+3", 3000, 3),
            ("1n", 1, 1),
            ("1u", 1, 1),
            ("1000000n", 1, 1),
            ("  4  ", 4000, 4),
            ("110", 110_000, 110),
        ];
        for (text, milli, value) in cases {
            let parsed = q(text);
            assert_eq!(parsed.milli(), *milli, "{text} milli");
            assert_eq!(parsed.value(), *value, "{text} value");
        }
    }

    #[test]
    fn negative_values_round_towards_zero() {
        assert!(q("-1").is_negative());
        assert_eq!(q("-1500m").value(), -1);
        assert_eq!(q("-2").milli(), -2000);
        assert!(!q("-0").is_negative());
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(q("9Ei").value(), i64::MAX);
        assert_eq!(q("1e100").milli(), i64::MAX);
        assert_eq!(q("99999999999999999999999999").value(), i64::MAX);
        assert_eq!(q("1e-100").milli(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for text in [
            "", "m", "abc", "1.2.3", "1Xi", "1e", "1e+", "1ee3", "1e3.5", "--1", "1 Gi", "1e999",
            "0x10", "1Gb", "Ki",
        ] {
            assert!(Quantity::parse(text).is_err(), "{text:?} parsed");
        }
        let e = Quantity::parse("12Q").unwrap_err();
        assert_eq!(
            e.to_string(),
            "quantity \"12Q\" is invalid: its suffix is unknown"
        );
    }
}
