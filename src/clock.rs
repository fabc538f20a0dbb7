//! UTC calendar arithmetic for snapshot names and human-readable times,
//! without a date-time dependency: all we need is civil time from Unix time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    now_nanos().div_euclid(1_000_000_000) as i64
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// A UTC calendar time, to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    pub fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour * 3600 + self.minute * 60 + self.second)
    }

    /// `YYYY-MM-DD-HH-MM-SS`, the snapshot naming scheme of the original.
    pub fn dashed(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// RFC 3339 in UTC, e.g. `2026-11-27T08:42:00Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Parses `YYYY-MM-DD-HH-MM-SS`; None unless every field is in range.
    pub fn parse_dashed(s: &str) -> Option<Civil> {
        let b = s.as_bytes();
        if b.len() != 19 {
            return None;
        }
        for (i, &c) in b.iter().enumerate() {
            let dash = matches!(i, 4 | 7 | 10 | 13 | 16);
            if dash != (c == b'-') || (!dash && !c.is_ascii_digit()) {
                return None;
            }
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
        let c = Civil {
            year: i64::from(num(0..4)?),
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
            minute: num(14..16)?,
            second: num(17..19)?,
        };
        let valid = (1..=12).contains(&c.month)
            && (1..=31).contains(&c.day)
            && c.hour < 24
            && c.minute < 60
            && c.second < 60
            && Civil::from_unix(c.to_unix()) == c;
        valid.then_some(c)
    }
}

/// Howard Hinnant's algorithm: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A duration in seconds as `1h 02m`, `3m 04s` or `5.2s`, for ages and times.
pub fn human_duration(secs: f64) -> String {
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h {:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}d {:02}h", s / 86_400, s / 3600 % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(Civil::from_unix(0).dashed(), "1970-01-01-00-00-00");
        assert_eq!(
            Civil::from_unix(1_465_865_831).dashed(),
            "2016-06-14-00-57-11"
        );
        assert_eq!(
            Civil::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn round_trip_many_days() {
        for secs in (-10_000_000_000i64..10_000_000_000).step_by(86_399 * 37) {
            let c = Civil::from_unix(secs);
            assert_eq!(c.to_unix(), secs);
            assert_eq!(Civil::parse_dashed(&c.dashed()), Some(c));
        }
    }

    #[test]
    fn parse_rejects_bad_names() {
        assert!(Civil::parse_dashed("2016-06-14-00-57-1").is_none());
        assert!(Civil::parse_dashed("2016-13-14-00-57-11").is_none());
        assert!(Civil::parse_dashed("2016-02-30-00-57-11").is_none());
        assert!(Civil::parse_dashed("2016_06-14-00-57-11").is_none());
        assert!(Civil::parse_dashed("2016-06-14-24-57-11").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(5.25), "5.2s");
        assert_eq!(human_duration(184.0), "3m 04s");
        assert_eq!(human_duration(3720.0), "1h 02m");
    }
}
