//! Standard cron schedules, as CronJobs use them: five fields (minute,
//! hour, day of month, month, day of week) with `*`, `?`, lists, ranges,
//! steps and month and weekday names, or a macro (`@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`). As in the cron
//! library upstream uses, when both day fields are restricted a day matches
//! if either does.
//!
//! [`Schedule::prev`] and [`Schedule::next`] walk civil time field by field
//! (no minute-by-minute scan), in a time zone. Pure; no clock.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parse error, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid schedule {schedule:?}: {reason}")]
pub struct ParseError {
    /// The schedule as given.
    pub schedule: String,
    /// What is wrong.
    pub reason: String,
}

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], offset: u32) -> Option<u32> {
    if let Ok(v) = s.parse() {
        return Some(v);
    }
    let lower = s.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == lower)
        .map(|i| i as u32 + offset)
}

fn field(s: &str, min: u32, max: u32, names: &[&str], offset: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let star = s.starts_with('*') || s.starts_with('?');
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st.parse().map_err(|_| format!("bad step in {part:?}"))?;
                if st == 0 {
                    return Err(format!("step of zero in {part:?}"));
                }
                (r, Some(st))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, names, offset).ok_or_else(|| format!("bad value {a:?}"))?;
            let b = value(b, names, offset).ok_or_else(|| format!("bad value {b:?}"))?;
            (a, b)
        } else {
            let a = value(range, names, offset).ok_or_else(|| format!("bad value {range:?}"))?;
            // "a/n" runs from a to the end.
            (a, if step.is_some() { max } else { a })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule.
    pub fn parse(schedule: &str) -> Result<Schedule, ParseError> {
        let err = |reason: String| ParseError {
            schedule: schedule.to_string(),
            reason,
        };
        let s = schedule.trim();
        let expanded = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(err(format!("unknown descriptor {other}")));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "expected exactly 5 fields, found {}",
                fields.len()
            )));
        }
        let (minute, _) = field(fields[0], 0, 59, &[], 0).map_err(err)?;
        let (hour, _) = field(fields[1], 0, 23, &[], 0).map_err(err)?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[], 0).map_err(err)?;
        let (month, _) = field(fields[3], 1, 12, &MONTHS, 1).map_err(err)?;
        let (mut dow, dow_star) = field(fields[4], 0, 7, &DAYS, 0).map_err(err)?;
        if dow & (1 << 7) != 0 {
            dow |= 1;
        }
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, t: DateTime) -> bool {
        let d = self.dom & (1 << t.day()) != 0;
        let w = self.dow & (1 << t.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            d && w
        } else {
            d || w
        }
    }

    fn month_matches(&self, t: DateTime) -> bool {
        self.month & (1 << t.month()) != 0
    }

    /// Whether civil time `t` (to the minute) is scheduled.
    pub fn matches(&self, t: DateTime) -> bool {
        self.month_matches(t)
            && self.day_matches(t)
            && self.hour & (1 << t.hour()) != 0
            && self.minute & (1 << t.minute()) != 0
    }

    /// The latest scheduled time at or before `at`, in `tz`, looking back at
    /// most five years.
    pub fn prev(&self, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let zoned = at.to_zoned(tz.clone());
        let start = zoned
            .datetime()
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?;
        let limit = start.checked_sub(5.years()).ok()?;
        let mut t = start;
        while t > limit {
            if !self.month_matches(t) {
                // Last minute of the previous month.
                t = t
                    .first_of_month()
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_sub(1.minute())
                    .ok()?;
                continue;
            }
            if !self.day_matches(t) {
                t = t
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_sub(1.minute())
                    .ok()?;
                continue;
            }
            if self.hour & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_sub(1.minute())
                    .ok()?;
                continue;
            }
            if self.minute & (1 << t.minute()) == 0 {
                t = t.checked_sub(1.minute()).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            // A civil time skipped by a DST jump lands after `at`.
            if ts <= at {
                return Some(ts);
            }
            t = t.checked_sub(1.minute()).ok()?;
        }
        None
    }

    /// The first scheduled time strictly after `after`, in `tz`, looking
    /// ahead at most five years.
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let zoned = after.to_zoned(tz.clone());
        let mut t = zoned
            .datetime()
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = t.checked_add(5.years()).ok()?;
        while t < limit {
            if !self.month_matches(t) {
                t = t
                    .first_of_month()
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.month())
                    .ok()?;
                continue;
            }
            if !self.day_matches(t) {
                t = t
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.day())
                    .ok()?;
                continue;
            }
            if self.hour & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minute & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_upstream_accepts() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 1 1 *",
            "0-30/10 9-17 * * MON-FRI",
            "15 3 * jan,jul sun",
            "0 12 ? * 7",
            "5/15 * * * *",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "@often",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_and_prev_in_utc() {
        let tz = TimeZone::UTC;
        let cases = [
            (
                "*/15 * * * *",
                "2026-03-04T10:07:30Z",
                "2026-03-04T10:00:00Z",
                "2026-03-04T10:15:00Z",
            ),
            (
                "@hourly",
                "2026-03-04T10:00:00Z",
                "2026-03-04T10:00:00Z",
                "2026-03-04T11:00:00Z",
            ),
            (
                "0 0 1 * *",
                "2026-03-04T10:00:00Z",
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
            ),
            (
                "30 9 * * mon-fri",
                "2026-03-07T12:00:00Z",
                "2026-03-06T09:30:00Z",
                "2026-03-09T09:30:00Z",
            ),
            (
                "0 0 29 2 *",
                "2026-03-01T00:00:00Z",
                "2024-02-29T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "5/20 * * * *",
                "2026-03-04T10:50:00Z",
                "2026-03-04T10:45:00Z",
                "2026-03-04T11:05:00Z",
            ),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            (
                "0 0 13 * 5",
                "2026-03-10T00:00:00Z",
                "2026-03-06T00:00:00Z",
                "2026-03-13T00:00:00Z",
            ),
        ];
        for (s, at, prev, next) in cases {
            let sch = Schedule::parse(s).unwrap();
            assert_eq!(sch.prev(ts(at), &tz), Some(ts(prev)), "prev {s} at {at}");
            assert_eq!(sch.next(ts(at), &tz), Some(ts(next)), "next {s} at {at}");
        }
    }

    #[test]
    fn time_zones() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let sch = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 in New York on 2026-01-15 is 14:00 UTC (EST).
        assert_eq!(
            sch.next(ts("2026-01-15T12:00:00Z"), &tz),
            Some(ts("2026-01-15T14:00:00Z"))
        );
        // And 13:00 UTC in summer (EDT).
        assert_eq!(
            sch.next(ts("2026-07-15T12:00:00Z"), &tz),
            Some(ts("2026-07-15T13:00:00Z"))
        );
    }

    #[test]
    fn impossible_dates_find_nothing() {
        let sch = Schedule::parse("0 0 31 2 *").unwrap();
        assert_eq!(sch.next(ts("2026-01-01T00:00:00Z"), &TimeZone::UTC), None);
    }
}
