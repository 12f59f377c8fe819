//! Quantities as the kubelet writes them: memory (`100Mi`, `1.5Gi`, `512M`, `1048576`),
//! CPU (`100m`, `0.5`, `2`), eviction thresholds (`100Mi` or `10%`) and Go-style
//! durations (`30s`, `1m30s`).
//!
//! Parsing is exact (integer arithmetic on the decimal digits), so `1.5Gi` is
//! 1610612736 bytes and `0.1` CPU is 100 millicores, as resource.Quantity has it.

use std::fmt;
use std::time::Duration;

/// Why a quantity did not parse. The caller adds the key and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: {hint}")]
pub struct QuantityError {
    pub value: String,
    pub kind: &'static str,
    pub hint: &'static str,
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

/// A CPU amount in millicores (1000 = one CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MilliCpu(pub u64);

/// An eviction threshold's value: an absolute quantity, or a percentage of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Quantity(Bytes),
    /// Percent of capacity, strictly between 0 and 100.
    Percent(f64),
}

const MI: u64 = 1 << 20;

impl Bytes {
    pub const fn mib(n: u64) -> Bytes {
        Bytes(n * MI)
    }

    pub fn parse(text: &str) -> Result<Bytes, QuantityError> {
        let err = || QuantityError {
            value: text.to_string(),
            kind: "memory quantity",
            hint: "write it like 100Mi, 1.5Gi, 512M or a number of bytes",
        };
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, suffix) = t.split_at(split);
        let multiplier: u64 = match suffix {
            "" => 1,
            "k" => 1000,
            "M" => 1000u64.pow(2),
            "G" => 1000u64.pow(3),
            "T" => 1000u64.pow(4),
            "P" => 1000u64.pow(5),
            "E" => 1000u64.pow(6),
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            "Pi" => 1 << 50,
            "Ei" => 1 << 60,
            _ => return Err(err()),
        };
        let (num, den) = decimal(number).ok_or_else(err)?;
        let bytes = num.checked_mul(u128::from(multiplier)).ok_or_else(err)? / den;
        u64::try_from(bytes).map(Bytes).map_err(|_| err())
    }

    /// Whole mebibytes, rounded down.
    pub fn as_mib(self) -> u64 {
        self.0 / MI
    }

    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }

    pub fn saturating_add(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(other.0))
    }
}

/// resource.Quantity's canonical form for binary-SI quantities: the largest suffix
/// that divides the value exactly (`100Mi`, `1536Mi`), else plain bytes.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SUFFIXES: [(&str, u32); 6] = [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ];
        if self.0 == 0 {
            return f.write_str("0");
        }
        for (suffix, shift) in SUFFIXES {
            let unit = 1u64 << shift;
            if self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl MilliCpu {
    pub fn parse(text: &str) -> Result<MilliCpu, QuantityError> {
        let err = || QuantityError {
            value: text.to_string(),
            kind: "CPU quantity",
            hint: "write it like 100m, 0.5 or 2",
        };
        let t = text.trim();
        let (number, per_unit) = match t.strip_suffix('m') {
            Some(n) => (n, 1u128),
            None => (t, 1000u128),
        };
        let (num, den) = decimal(number).ok_or_else(err)?;
        let milli = num.checked_mul(per_unit).ok_or_else(err)?;
        if !milli.is_multiple_of(den) {
            return Err(QuantityError {
                hint: "the smallest CPU unit is 1m",
                ..err()
            });
        }
        u64::try_from(milli / den).map(MilliCpu).map_err(|_| err())
    }
}

impl fmt::Display for MilliCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl Threshold {
    pub fn parse(text: &str) -> Result<Threshold, QuantityError> {
        let t = text.trim();
        match t.strip_suffix('%') {
            Some(p) => {
                let err = || QuantityError {
                    value: text.to_string(),
                    kind: "percentage",
                    hint: "write it like 10% (more than 0, less than 100)",
                };
                let (num, den) = decimal(p).ok_or_else(err)?;
                let percent = num as f64 / den as f64;
                if percent <= 0.0 || percent >= 100.0 {
                    return Err(err());
                }
                Ok(Threshold::Percent(percent))
            }
            None => Bytes::parse(t)
                .map(Threshold::Quantity)
                .map_err(|e| QuantityError {
                    kind: "threshold",
                    hint: "write a quantity like 100Mi or a percentage like 10%",
                    ..e
                }),
        }
    }

    /// The threshold in bytes for a given capacity (percentages round down).
    pub fn resolve(&self, capacity: Bytes) -> Bytes {
        match *self {
            Threshold::Quantity(b) => b,
            Threshold::Percent(p) => Bytes((capacity.0 as f64 * p / 100.0) as u64),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Quantity(b) => b.fmt(f),
            Threshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A non-negative decimal as a fraction `num / den` (den a power of ten).
fn decimal(text: &str) -> Option<(u128, u128)> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let den = 10u128.pow(frac.len() as u32);
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    Some((int.checked_mul(den)?.checked_add(frac)?, den))
}

/// Parses a Go-style duration: `30s`, `5m`, `1h30m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, QuantityError> {
    let err = || QuantityError {
        value: text.to_string(),
        kind: "duration",
        hint: "write it like 30s, 5m or 1h30m",
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let number: u32 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(err()),
        };
        total = total
            .checked_add(unit.checked_mul(number).ok_or_else(err)?)
            .ok_or_else(err)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration the way Go prints it, shortest form: `30s`, `2m`, `1m30s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 && d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities_parse_exactly() {
        assert_eq!(Bytes::parse("100Mi"), Ok(Bytes(100 << 20)));
        assert_eq!(Bytes::parse("1.5Gi"), Ok(Bytes(1_610_612_736)));
        assert_eq!(Bytes::parse("512M"), Ok(Bytes(512_000_000)));
        assert_eq!(Bytes::parse("1048576"), Ok(Bytes(1 << 20)));
        assert_eq!(Bytes::parse("64Ki"), Ok(Bytes(65536)));
        for bad in [
            "",
            "Mi",
            "100mi",
            "-1Mi",
            "1.2.3Gi",
            "100 Mi x",
            "1e3",
            "99999999Ei",
        ] {
            assert!(Bytes::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Bytes::parse("100MB").unwrap_err().to_string(),
            "\"100MB\" is not a valid memory quantity: write it like 100Mi, 1.5Gi, 512M or a number of bytes"
        );
    }

    #[test]
    fn memory_prints_as_resource_quantity_does() {
        assert_eq!(Bytes(100 << 20).to_string(), "100Mi");
        assert_eq!(Bytes(1536 << 20).to_string(), "1536Mi");
        assert_eq!(Bytes(2 << 30).to_string(), "2Gi");
        assert_eq!(Bytes(1000).to_string(), "1000");
        assert_eq!(Bytes(0).to_string(), "0");
        assert_eq!(Bytes(123 * 1024).to_string(), "123Ki");
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(MilliCpu::parse("100m"), Ok(MilliCpu(100)));
        assert_eq!(MilliCpu::parse("0.5"), Ok(MilliCpu(500)));
        assert_eq!(MilliCpu::parse("2"), Ok(MilliCpu(2000)));
        assert!(MilliCpu::parse("0.0005").is_err());
        assert!(MilliCpu::parse("1core").is_err());
        assert_eq!(MilliCpu(250).to_string(), "250m");
        assert_eq!(MilliCpu(2000).to_string(), "2");
    }

    #[test]
    fn thresholds() {
        assert_eq!(Threshold::parse("10%"), Ok(Threshold::Percent(10.0)));
        assert_eq!(
            Threshold::parse("100Mi"),
            Ok(Threshold::Quantity(Bytes::mib(100)))
        );
        assert_eq!(
            Threshold::Percent(10.0).resolve(Bytes(1000)),
            Bytes(100),
            "10% of 1000 bytes"
        );
        for bad in ["0%", "100%", "150%", "x%", "%", "ten"] {
            assert!(Threshold::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5", "s", "5x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
