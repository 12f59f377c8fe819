//! Time for tables: RFC 3339 timestamps, and upstream's `HumanDuration`
//! (`k8s.io/apimachinery/pkg/util/duration`), the `5s`, `3m2s`, `2d3h` of
//! every AGE column. The current time is always passed in.

use std::time::{SystemTime, UNIX_EPOCH};

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Nanoseconds since the Unix epoch (negative before it).
pub fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00Z`,
/// `2024-05-01T12:00:00.123456Z`, `...+02:00`) into nanoseconds since the
/// epoch. `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(s.get(0..4)?)?;
    let month = digits(s.get(5..7)?)?;
    let day = digits(s.get(8..10)?)?;
    let hour = digits(s.get(11..13)?)?;
    let minute = digits(s.get(14..16)?)?;
    let second = digits(s.get(17..19)?)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let mut scaled = String::from(&frac[..len.min(9)]);
        while scaled.len() < 9 {
            scaled.push('0');
        }
        nanos = scaled.parse().ok()?;
        rest = &frac[len..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let body = &rest[1..];
            if body.len() != 5 || body.as_bytes()[2] != b':' {
                return None;
            }
            let h = digits(&body[..2])?;
            let m = digits(&body[3..])?;
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * NANOS_PER_SEC + nanos)
}

/// RFC 3339 in UTC with whole seconds, as Go's `time.RFC3339` prints it.
pub fn format_rfc3339(nanos: i128) -> String {
    let secs = i64::try_from(nanos.div_euclid(NANOS_PER_SEC)).unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Go's zero `time.Time` as RFC 3339.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Upstream's `HumanDuration`: about two significant figures, from `5s`
/// through `3m2s`, `45m`, `3h10m`, `2d3h` to `3y45d`. More than a second
/// in the future is `<invalid>`.
pub fn human_duration(nanos: i128) -> String {
    // Go truncates toward zero, as i128 division does.
    let seconds = nanos / NANOS_PER_SEC;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Upstream's `translateTimestampSince`: the age of a timestamp, or
/// `<unknown>` when it is missing (or unparseable).
pub fn since(timestamp: Option<&str>, now: i128) -> String {
    match timestamp.and_then(parse_rfc3339) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: i128 = NANOS_PER_SEC;

    #[test]
    fn human_durations_match_upstream() {
        let cases: &[(i128, &str)] = &[
            (-3 * S, "<invalid>"),
            (-2 * S, "<invalid>"),
            (-S - S / 2, "0s"),
            (-S, "0s"),
            (0, "0s"),
            (S / 2, "0s"),
            (5 * S, "5s"),
            (119 * S, "119s"),
            (120 * S, "2m"),
            (182 * S, "3m2s"),
            (9 * 60 * S + 59 * S, "9m59s"),
            (10 * 60 * S, "10m"),
            (179 * 60 * S, "179m"),
            (3 * 3600 * S, "3h"),
            (3 * 3600 * S + 10 * 60 * S, "3h10m"),
            (8 * 3600 * S, "8h"),
            (47 * 3600 * S, "47h"),
            (48 * 3600 * S, "2d"),
            (51 * 3600 * S, "2d3h"),
            (8 * 24 * 3600 * S, "8d"),
            (729 * 24 * 3600 * S, "729d"),
            (730 * 24 * 3600 * S, "2y"),
            (775 * 24 * 3600 * S, "2y45d"),
            (8 * 365 * 24 * 3600 * S, "8y"),
            (20 * 365 * 24 * 3600 * S, "20y"),
        ];
        for &(d, want) in cases {
            assert_eq!(human_duration(d), want, "{d}");
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_rfc3339("2024-05-01T12:34:56Z").unwrap();
        assert_eq!(t, 1_714_566_896 * S);
        assert_eq!(format_rfc3339(t), "2024-05-01T12:34:56Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-05-01T14:34:56+02:00"), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T12:34:56.5Z"), Some(t + S / 2));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:34:56.123456789123Z"),
            Some(t + 123_456_789)
        );
        assert_eq!(format_rfc3339(parse_rfc3339(ZERO_TIME).unwrap()), ZERO_TIME);
        assert_eq!(
            format_rfc3339(parse_rfc3339("2000-02-29T23:59:59Z").unwrap()),
            "2000-02-29T23:59:59Z"
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00:00+0200",
            "2024-05-01T00:00:00.Z",
            "xxxx-05-01T00:00:00Z",
            "2024-05-01T00:00:00Zjunk",
            "2024-05-01T00:00:0é",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn ages() {
        let now = unix_nanos(UNIX_EPOCH + Duration::from_secs(1_714_566_896 + 182));
        assert_eq!(since(Some("2024-05-01T12:34:56Z"), now), "3m2s");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("garbage"), now), "<unknown>");
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), -S);
    }
}
