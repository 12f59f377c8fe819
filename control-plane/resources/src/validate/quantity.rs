//! Kubernetes resource quantities (`500m`, `1Gi`, `1e3`): parsing, exact
//! comparison and upstream's canonical form.
//!
//! Upstream's `resource.Quantity` keeps the suffix family the value was
//! written in (decimal SI, binary SI, or decimal exponent), rounds anything
//! finer than a nano up, and prints the canonical form: `1000m` is `1`,
//! `1024Mi` is `1Gi`, `0.5` is `500m`. Values are held exactly as
//! `mantissa × 10^exp`; quantities beyond 38 significant digits or an
//! exponent of ±10000 are refused rather than approximated.

use std::cmp::Ordering;
use std::fmt;

/// The suffix family a quantity was written in, which its canonical form
/// keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `m`, `k`, `M`, ... or no suffix.
    DecimalSi,
    /// `Ki`, `Mi`, `Gi`, ...
    BinarySi,
    /// `e3`, `E-2`.
    DecimalExponent,
}

/// Why a string is not a quantity, in upstream's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A parsed quantity: `mantissa × 10^exp`, at most nano precision.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    mantissa: i128,
    exp: i32,
    format: Format,
}

const MAX_DIGITS: usize = 38;
const MAX_EXP: i32 = 10_000;

impl Quantity {
    /// Parses a quantity as upstream's `resource.ParseQuantity` does.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(QuantityError::Format);
        }
        let mut pos = 0;
        let mut negative = false;
        if let Some(&c) = b.first()
            && (c == b'+' || c == b'-')
        {
            negative = c == b'-';
            pos = 1;
        }
        let int_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &s[int_start..pos];
        let mut frac_digits = "";
        if pos < b.len() && b[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &s[frac_start..pos];
        }
        // The suffix: [eEinumkKMGTP]* then an optional sign and digits.
        let suffix_start = pos;
        while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
            pos += 1;
        }
        if pos < b.len() && (b[pos] == b'-' || b[pos] == b'+') {
            pos += 1;
        }
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos != b.len() {
            return Err(QuantityError::Format);
        }
        let suffix = &s[suffix_start..];
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::Numeric);
        }

        let digits = format!("{int_digits}{frac_digits}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_DIGITS {
            return Err(QuantityError::Numeric);
        }
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::Numeric)?
        };
        let frac_len = i32::try_from(frac_digits.len()).map_err(|_| QuantityError::Numeric)?;
        let mut exp = -frac_len;

        let (base, power, format) = interpret_suffix(suffix).ok_or(QuantityError::Suffix)?;
        if base == 2 {
            let factor = 1i128 << power;
            mantissa = mantissa.checked_mul(factor).ok_or(QuantityError::Numeric)?;
        } else {
            exp = exp.checked_add(power).ok_or(QuantityError::Numeric)?;
        }
        if !(-MAX_EXP..=MAX_EXP).contains(&exp) {
            return Err(QuantityError::Numeric);
        }
        if negative {
            mantissa = -mantissa;
        }
        let mut q = Quantity {
            mantissa,
            exp,
            format,
        };
        q.round_up_to_nano();
        q.normalize();
        Ok(q)
    }

    /// Anything finer than 10^-9 is rounded away from zero, as upstream
    /// does.
    fn round_up_to_nano(&mut self) {
        if self.exp >= -9 {
            return;
        }
        let shift = u32::try_from(-9 - self.exp).unwrap_or(u32::MAX);
        let (quotient, remainder) = match 10i128.checked_pow(shift) {
            Some(div) => (self.mantissa / div, self.mantissa % div),
            None => (0, self.mantissa),
        };
        self.mantissa = quotient + remainder.signum();
        self.exp = -9;
    }

    /// Strips trailing zeros from the mantissa, so equal values look alike.
    fn normalize(&mut self) {
        if self.mantissa == 0 {
            self.exp = 0;
            return;
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.exp += 1;
        }
    }

    /// The value rounded away from zero to a multiple of `10^scale`, as
    /// upstream's `RoundUp` does (`SetDefaults_ResourceList` rounds every
    /// resource list up to milli precision with `scale` -3).
    pub fn round_up(&self, scale: i32) -> Quantity {
        let mut q = *self;
        if q.exp >= scale {
            return q;
        }
        let shift = u32::try_from(scale - q.exp).unwrap_or(u32::MAX);
        let (quotient, remainder) = match 10i128.checked_pow(shift) {
            Some(div) => (q.mantissa / div, q.mantissa % div),
            None => (0, q.mantissa),
        };
        q.mantissa = quotient + remainder.signum();
        q.exp = scale;
        q.normalize();
        q
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.exp >= 0 || self.mantissa == 0
    }

    /// The value as an integer, when it is one and fits.
    fn as_integer(&self) -> Option<i128> {
        if self.exp < 0 {
            return None;
        }
        let scale = 10i128.checked_pow(u32::try_from(self.exp).ok()?)?;
        self.mantissa.checked_mul(scale)
    }

    /// The value rounded up to a whole number of thousandths, as an
    /// integer (upstream's `MilliValue`), when it fits.
    pub fn milli_value(&self) -> Option<i128> {
        let milli = Quantity {
            mantissa: self.mantissa,
            exp: self.exp + 3,
            format: self.format,
        };
        if milli.exp >= 0 {
            return milli.as_integer();
        }
        let div = 10i128.checked_pow(u32::try_from(-milli.exp).ok()?)?;
        let (q, r) = (milli.mantissa / div, milli.mantissa % div);
        Some(if r > 0 { q + 1 } else { q })
    }

    /// The value, approximately, for display arithmetic.
    pub fn as_f64(&self) -> f64 {
        // i128 to f64 is lossy by design here.
        #[allow(clippy::cast_precision_loss)]
        let m = self.mantissa as f64;
        m * 10f64.powi(self.exp)
    }

    /// Upstream's canonical string: the form `kubectl get -o yaml` shows.
    pub fn canonical(&self) -> String {
        if self.mantissa == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySi {
            let small = self.as_integer().is_some_and(|v| v > -1024 && v < 1024);
            if small || !self.is_integer() || self.as_integer().is_none() {
                format = Format::DecimalSi;
            }
        }
        match format {
            Format::BinarySi => {
                let mut value = self.as_integer().unwrap_or(0);
                let mut power = 0;
                while power < 6 && value % 1024 == 0 {
                    value /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                format!("{value}{suffix}")
            }
            Format::DecimalSi | Format::DecimalExponent => {
                // Lower the exponent to a multiple of three.
                let mut mantissa = self.mantissa;
                let mut exp = self.exp;
                let r = exp.rem_euclid(3);
                for _ in 0..r {
                    match mantissa.checked_mul(10) {
                        Some(m) => {
                            mantissa = m;
                            exp -= 1;
                        }
                        None => break,
                    }
                }
                if format == Format::DecimalExponent {
                    return if exp == 0 {
                        format!("{mantissa}")
                    } else {
                        format!("{mantissa}e{exp}")
                    };
                }
                // Decimal SI has suffixes from n (-9) to E (18).
                while exp > 18 {
                    match mantissa.checked_mul(1000) {
                        Some(m) => {
                            mantissa = m;
                            exp -= 3;
                        }
                        None => return format!("{mantissa}e{exp}"),
                    }
                }
                let suffix = match exp {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    18 => "E",
                    _ => "",
                };
                format!("{mantissa}{suffix}")
            }
        }
    }
}

/// `(base, power, format)`: `k` is `(10, 3)`, `Ki` is `(2, 10)`, `e5` is
/// `(10, 5)`.
fn interpret_suffix(suffix: &str) -> Option<(u32, i32, Format)> {
    let decimal = match suffix {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(p) = decimal {
        return Some((10, p, Format::DecimalSi));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(p) = binary {
        return Some((2, p, Format::BinarySi));
    }
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    if rest.is_empty() {
        return None;
    }
    let p: i64 = rest.parse().ok()?;
    let p = i32::try_from(p).ok()?;
    Some((10, p, Format::DecimalExponent))
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    /// Exact comparison of the values (the format does not matter).
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.mantissa, other.mantissa);
        match a.signum().cmp(&b.signum()) {
            Ordering::Equal if a == 0 => return Ordering::Equal,
            Ordering::Equal => {}
            unequal => return unequal,
        }
        // Same sign, both non-zero: scale the one with the larger exponent
        // down to the other's. If that overflows, its magnitude is larger.
        let (big, small, flipped) = if self.exp >= other.exp {
            (self, other, false)
        } else {
            (other, self, true)
        };
        let diff = u32::try_from(big.exp - small.exp).unwrap_or(u32::MAX);
        let scaled = 10i128
            .checked_pow(diff)
            .and_then(|f| big.mantissa.checked_mul(f));
        let ord = match scaled {
            Some(s) => s.cmp(&small.mantissa),
            None if big.mantissa > 0 => Ordering::Greater,
            None => Ordering::Less,
        };
        if flipped { ord.reverse() } else { ord }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn canonical_forms_match_upstream() {
        let cases = [
            ("0", "0"),
            ("0m", "0"),
            ("1", "1"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            (".5", "500m"),
            ("100m", "100m"),
            ("1000", "1k"),
            ("1100", "1100"),
            ("10M", "10M"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("512", "512"),
            ("100Ki", "100Ki"),
            ("1Ki", "1Ki"),
            ("1.1Ki", "1126400m"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1.5e3", "1500"),
            ("12e-1", "1200e-3"),
            ("-1", "-1"),
            ("-100m", "-100m"),
            ("+2", "2"),
            ("1n", "1n"),
            ("0.1n", "1n"),
            ("1.0000000001", "1000000001n"),
            ("2000E", "2000E"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("123Mi", "123Mi"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).canonical(), want, "{input}");
        }
    }

    #[test]
    fn errors_read_like_upstream() {
        assert_eq!(Quantity::parse(""), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("abc"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1 "), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1Gb"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1K"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("1e"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse("."), Err(QuantityError::Numeric));
        assert_eq!(Quantity::parse("-"), Err(QuantityError::Numeric));
        assert_eq!(
            Quantity::parse(&"9".repeat(50)),
            Err(QuantityError::Numeric)
        );
        assert_eq!(Quantity::parse("1e99999"), Err(QuantityError::Numeric));
        assert_eq!(
            Quantity::parse("99999999999999999999999999999Ei"),
            Err(QuantityError::Numeric)
        );
        assert!(
            QuantityError::Format
                .to_string()
                .starts_with("quantities must match")
        );
    }

    #[test]
    fn comparison_is_exact() {
        assert!(q("1") == q("1000m"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("500m") < q("1"));
        assert!(q("-1") < q("0"));
        assert!(q("-2") < q("-1"));
        assert!(q("1e30") > q("1n"));
        assert!(q("1n") < q("1e30"));
        assert!(q("-1e30") < q("-1n"));
        assert_eq!(q("128Mi").cmp(&q("134217728")), Ordering::Equal);
    }

    #[test]
    fn helpers() {
        assert!(q("2").is_integer());
        assert!(!q("1500m").is_integer());
        assert_eq!(q("1.5").milli_value(), Some(1500));
        assert_eq!(q("1n").milli_value(), Some(1));
        assert!(q("-1").is_negative());
        assert!(q("0").is_zero());
        assert!((q("250m").as_f64() - 0.25).abs() < 1e-12);
        assert_eq!(q("1Ki").format(), Format::BinarySi);
        assert_eq!(q("3").to_string(), "3");
        assert_eq!(q("0.5m").round_up(-3).canonical(), "1m");
        assert_eq!(q("1.0001").round_up(-3).canonical(), "1001m");
        assert_eq!(q("-0.5m").round_up(-3).canonical(), "-1m");
        assert_eq!(q("2Gi").round_up(-3).canonical(), "2Gi");
        // absurd scales do not panic
        assert_eq!(
            q("1n").round_up(40).canonical(),
            format!("1{}E", "0".repeat(22))
        );
    }
}
