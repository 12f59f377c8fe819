//! How Go's JSON encoder writes strings, times and durations.

use std::fmt::Write as _;

/// Bytes as Go's JSON encoder writes a string: each byte that is not part
/// of valid UTF-8 becomes U+FFFD on its own.
pub(crate) fn go_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, bad) = rest.split_at(e.valid_up_to());
                // `valid_up_to` marks valid UTF-8.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push(char::REPLACEMENT_CHARACTER);
                rest = bad.get(1..).unwrap_or_default();
            }
        }
    }
}

/// Seconds of 0000-01-01T00:00:00Z and of 9999-12-31T23:59:59Z.
const MIN_SECONDS: i64 = -62_167_219_200;
const MAX_SECONDS: i64 = 253_402_300_799;
/// Seconds of Go's zero time, 0001-01-01T00:00:00Z.
pub(crate) const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// RFC 3339 in UTC, with `micros` digits of fraction when given; `None`
/// outside years 0 to 9999.
pub(crate) fn rfc3339(seconds: i64, micros: Option<u32>) -> Option<String> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return None;
    }
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if let Some(micros) = micros {
        let _ = write!(out, ".{micros:06}");
    }
    out.push('Z');
    Some(out)
}

/// The proleptic Gregorian date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to eras of 400 years starting on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Unix(seconds, nanos)`: nanoseconds outside `0..1e9` carry
/// into the seconds. `None` on overflow.
pub(crate) fn normalize(seconds: i64, nanos: i64) -> Option<(i64, u32)> {
    let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000))?;
    Some((seconds, nanos.rem_euclid(1_000_000_000) as u32))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let negative = nanos < 0;
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // Under a second: the largest unit that fits, with a fraction.
        let (unit, digits) = match u {
            0 => return "0s".into(),
            1..=999 => ("ns", 0),
            1_000..=999_999 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (whole, fraction) = split_fraction(u, digits);
        let _ = write!(out, "{whole}{fraction}{unit}");
    } else {
        let (whole, fraction) = split_fraction(u, 9);
        u = whole;
        let (hours, minutes, secs) = (u / 3600, u / 60 % 60, u % 60);
        if hours > 0 {
            let _ = write!(out, "{hours}h");
        }
        if hours > 0 || minutes > 0 {
            let _ = write!(out, "{minutes}m");
        }
        let _ = write!(out, "{secs}{fraction}s");
    }
    if negative {
        out.insert(0, '-');
    }
    out
}

/// `value / 10^digits` and its fraction as `.5`, trailing zeros dropped;
/// empty when the fraction is zero.
fn split_fraction(value: u64, digits: u32) -> (u64, String) {
    let scale = 10u64.pow(digits);
    let fraction = value % scale;
    if fraction == 0 {
        return (value / scale, String::new());
    }
    let text = format!(".{fraction:0width$}", width = digits as usize);
    (value / scale, text.trim_end_matches('0').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_replace_each_bad_byte() {
        assert_eq!(go_string(b"caf\xc3\xa9"), "café");
        assert_eq!(go_string(b"a\xffb"), "a\u{fffd}b");
        // A truncated sequence is one replacement per byte, as in Go.
        assert_eq!(go_string(b"\xe2\x82A"), "\u{fffd}\u{fffd}A");
        assert_eq!(go_string(b"\xed\xa0\x80"), "\u{fffd}\u{fffd}\u{fffd}");
        assert_eq!(go_string(b""), "");
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0, None).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_767_323_045, None).unwrap(),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            rfc3339(1_767_323_045, Some(120)).unwrap(),
            "2026-01-02T03:04:05.000120Z"
        );
        assert_eq!(rfc3339(951_782_400, None).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1, None).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(GO_ZERO_SECONDS, None).unwrap(),
            "0001-01-01T00:00:00Z"
        );
        assert_eq!(rfc3339(MIN_SECONDS, None).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_SECONDS, None).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(MAX_SECONDS + 1, None), None);
        assert_eq!(rfc3339(MIN_SECONDS - 1, None), None);
        assert_eq!(rfc3339(i64::MIN, None), None);
    }

    #[test]
    fn normalizing() {
        assert_eq!(normalize(10, 1_500_000_000), Some((11, 500_000_000)));
        assert_eq!(normalize(10, -1), Some((9, 999_999_999)));
        assert_eq!(normalize(i64::MAX, 1_000_000_000), None);
    }

    #[test]
    fn durations() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (60_000_000_000, "1m0s"),
            (4_000_000_000 * 60 + 5_000_000_000, "4m5s"),
            (3_600_000_000_000, "1h0m0s"),
            (
                3_600_000_000_000 * 26 + 60_000_000_000 * 3 + 500_000_000,
                "26h3m0.5s",
            ),
            (-1_500_000_000, "-1.5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(go_duration(nanos), text, "{nanos}");
        }
    }
}
