//! Local time for retention: which civil hour, day, week, month and year a
//! snapshot falls in, and where "newest snapshot minus 1y2mo" lies.
//!
//! People think of "the backup of Monday" in their own time, so buckets
//! use the UTC offset in force where and when the snapshot was taken (which
//! a backup records), not the zone of whoever runs `forget` later. That is
//! also what restic does: a snapshot's time carries its offset, and Go's
//! calendar accessors read the time in that offset.
//!
//! The cutoff of `--keep-within*` mirrors Go's `AddDate` as restic calls it
//! on the newest snapshot's time: years, months and days are subtracted
//! from the wall-clock date, an out-of-range day rolls over into the next
//! month (31 March − 1mo = "31 February" = 2 or 3 March), and the wall-clock
//! result is turned back into an instant in the newest snapshot's zone;
//! hours are then subtracted as elapsed time. Which zone that is follows
//! from how Go reads restic's stored times: a recorded offset that is the
//! local zone's offset at that instant reads as the local zone (so the
//! subtraction is DST-aware), offset 0 reads as UTC (stored as `Z`), any
//! other offset as a fixed offset.

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{Span, Timestamp};

use super::duration::Duration;

/// The zone that retention works in.
#[derive(Clone, Debug)]
pub enum Zone {
    /// Bucket each snapshot by its recorded UTC offset; this zone (normally
    /// the system's) decides the calendar arithmetic of `--keep-within*`
    /// and the offset of snapshots that recorded none.
    Local(TimeZone),
    /// Bucket and count in UTC, whatever offsets snapshots recorded
    /// (`forget --utc`).
    Utc,
}

impl Zone {
    /// The system's zone (`TZ`, else `/etc/localtime`; UTC if neither can
    /// be read).
    pub fn system() -> Zone {
        Zone::Local(TimeZone::system())
    }

    /// The UTC offset, in seconds, of this zone at Unix time `unix`: what a
    /// backup records, and what the caller passes for older snapshots that
    /// recorded no offset.
    pub fn offset_at(&self, unix: i64) -> i32 {
        match self {
            Zone::Utc => 0,
            Zone::Local(tz) => tz_offset(tz, unix),
        }
    }
}

/// The UTC offset, in seconds, of the system's zone at Unix time `unix`.
pub fn local_offset(unix: i64) -> i32 {
    Zone::system().offset_at(unix)
}

/// A timestamp for `unix`, clamped to the range jiff represents
/// (years -9999..=9999, far beyond any backup).
fn timestamp(unix: i64) -> Timestamp {
    let lo = Timestamp::MIN.as_second();
    let hi = Timestamp::MAX.as_second();
    Timestamp::from_second(unix.clamp(lo, hi)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn tz_offset(tz: &TimeZone, unix: i64) -> i32 {
    tz.to_offset(timestamp(unix)).seconds()
}

/// The wall-clock time of `unix` at UTC offset `offset` seconds, or `None`
/// when either is out of range (the offset beyond ±25:59:59, or the time
/// beyond years -9999..=9999).
pub(super) fn civil(unix: i64, offset: i32) -> Option<DateTime> {
    let ts = Timestamp::from_second(unix).ok()?;
    Some(Offset::from_seconds(offset).ok()?.to_datetime(ts))
}

/// Where a wall-clock time is turned back into an instant.
enum Location<'a> {
    Fixed(i32),
    Zone(&'a TimeZone),
}

/// `civil` as an instant in `loc`, choosing as Go's `time.Date` does for a
/// wall-clock time that a DST change skipped or repeated: take the offset in
/// force at the wall-clock time read as UTC, then the offset in force at the
/// instant that gives. For European zones this moves a skipped time forward
/// by the gap and picks the later of a repeated hour.
fn to_unix(civil: DateTime, loc: &Location<'_>) -> Option<i64> {
    let as_utc = Offset::UTC.to_timestamp(civil).ok()?.as_second();
    let offset = match loc {
        Location::Fixed(o) => *o,
        Location::Zone(tz) => {
            let first = tz_offset(tz, as_utc);
            tz_offset(tz, as_utc - i64::from(first))
        }
    };
    Some(as_utc - i64::from(offset))
}

/// Go's `AddDate(-years, -months, -days)` on a wall-clock time: subtract
/// from the fields, carry months into years, and let the day overflow into
/// the following month(s) rather than clamping it to the month's end.
fn sub_date(civil: DateTime, years: i64, months: i64, days: i64) -> Option<DateTime> {
    let month0 = i64::from(civil.year()) * 12 + i64::from(civil.month()) - 1 - years * 12 - months;
    let first = Date::new(
        i16::try_from(month0.div_euclid(12)).ok()?,
        i8::try_from(month0.rem_euclid(12) + 1).ok()?,
        1,
    )
    .ok()?;
    let day = i64::from(civil.day()) - days;
    let date = first
        .checked_add(Span::new().try_days(day - 1).ok()?)
        .ok()?;
    Some(DateTime::from_parts(date, civil.time()))
}

/// The `--keep-within*` cutoff for a newest snapshot at `unix` with
/// recorded `offset`: snapshots strictly newer than the result are within
/// `d`. `i64::MIN` (everything is within) when the subtraction runs off the
/// calendar.
pub(super) fn cutoff(unix: i64, offset: i32, d: &Duration, zone: &Zone) -> i64 {
    let (offset, loc) = match zone {
        Zone::Utc => (0, Location::Fixed(0)),
        Zone::Local(tz) if offset != 0 && tz_offset(tz, unix) == offset => {
            (offset, Location::Zone(tz))
        }
        Zone::Local(_) => (offset, Location::Fixed(offset)),
    };
    civil(unix, offset)
        .and_then(|c| sub_date(c, d.years.into(), d.months.into(), d.total_days()))
        .and_then(|c| to_unix(c, &loc))
        .map_or(i64::MIN, |t| t - 3600 * i64::from(d.hours))
}

/// A time given to `bu --time`, as an instant and the UTC offset to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupTime {
    pub unix: i64,
    pub offset: i32,
}

/// Why a `--time` could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseTimeError {
    #[error(
        "time {0:?} is not of the form \"YYYY-MM-DD HH:MM:SS\" (local time, e.g. \"2024-03-31 18:30:00\")"
    )]
    Format(String),
    #[error("time {0:?} is not a date and time that exists, e.g. \"2024-03-31 18:30:00\"")]
    Invalid(String),
    #[error("time {0:?} lies before 1970, which snapshot names cannot hold")]
    Before1970(String),
}

/// Reads a `bu --time` value, `YYYY-MM-DD HH:MM:SS` in `zone` (local time
/// as restic's `backup --time` reads it), and gives the instant and the
/// offset to record. A wall-clock time that a DST change skipped or
/// repeated resolves to the instant restic (Go) picks: see [`to_unix`].
pub fn parse_backup_time(text: &str, zone: &Zone) -> Result<BackupTime, ParseTimeError> {
    let b = text.as_bytes();
    let shape = b.len() == 19
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b' ',
            13 | 16 => c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return Err(ParseTimeError::Format(text.to_owned()));
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<i16>().unwrap_or(-1);
    let invalid = || ParseTimeError::Invalid(text.to_owned());
    let narrow = |v: i16| i8::try_from(v).map_err(|_| invalid());
    let dt = DateTime::new(
        num(0..4),
        narrow(num(5..7))?,
        narrow(num(8..10))?,
        narrow(num(11..13))?,
        narrow(num(14..16))?,
        narrow(num(17..19))?,
        0,
    )
    .map_err(|_| invalid())?;
    let loc = match zone {
        Zone::Utc => Location::Fixed(0),
        Zone::Local(tz) => Location::Zone(tz),
    };
    let unix = to_unix(dt, &loc).ok_or_else(invalid)?;
    if unix < 0 {
        return Err(ParseTimeError::Before1970(text.to_owned()));
    }
    Ok(BackupTime {
        unix,
        offset: zone.offset_at(unix),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central European rules, as a POSIX TZ string so the test needs no
    /// tz database (valid for the EU since 1996).
    fn berlin() -> Zone {
        Zone::Local(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap())
    }

    fn utc(s: &str) -> i64 {
        parse_backup_time(s, &Zone::Utc).unwrap().unix
    }

    fn dur(s: &str) -> Duration {
        s.parse().unwrap()
    }

    #[test]
    fn forget_backup_time_in_a_dst_zone() {
        let z = berlin();
        let t = |s| parse_backup_time(s, &z).unwrap();
        assert_eq!(
            t("2024-01-15 12:00:00"),
            BackupTime {
                unix: utc("2024-01-15 11:00:00"),
                offset: 3600
            }
        );
        assert_eq!(t("2024-07-15 12:00:00").offset, 7200);
        // Skipped by the spring change: moved forward by the gap (03:30 CEST).
        assert_eq!(
            t("2024-03-31 02:30:00"),
            BackupTime {
                unix: utc("2024-03-31 01:30:00"),
                offset: 7200
            }
        );
        // Repeated by the autumn change: the later one (CET), as Go picks.
        assert_eq!(
            t("2024-10-27 02:30:00"),
            BackupTime {
                unix: utc("2024-10-27 01:30:00"),
                offset: 3600
            }
        );
        assert_eq!(utc("1970-01-01 00:00:00"), 0);
    }

    #[test]
    fn forget_backup_time_errors() {
        let z = Zone::Utc;
        let e = |s| parse_backup_time(s, &z).unwrap_err();
        assert!(matches!(
            e("2024-03-31T12:00:00"),
            ParseTimeError::Format(_)
        ));
        assert!(matches!(e("2024-03-31 12:00"), ParseTimeError::Format(_)));
        assert!(matches!(e("yesterday"), ParseTimeError::Format(_)));
        assert!(matches!(
            e("2024-13-01 00:00:00"),
            ParseTimeError::Invalid(_)
        ));
        assert!(matches!(
            e("2023-02-29 00:00:00"),
            ParseTimeError::Invalid(_)
        ));
        assert!(matches!(
            e("2024-01-01 24:00:00"),
            ParseTimeError::Invalid(_)
        ));
        assert!(matches!(
            e("1969-12-31 23:59:59"),
            ParseTimeError::Before1970(_)
        ));
        assert!(matches!(
            parse_backup_time("1970-01-01 00:30:00", &berlin()),
            Err(ParseTimeError::Before1970(_))
        ));
    }

    #[test]
    fn forget_cutoff_rolls_over_like_go_add_date() {
        let z = Zone::Utc;
        let c = |newest: &str, d: &str| cutoff(utc(newest), 0, &dur(d), &z);
        // 31 March − 1 month = "31 February" = 3 March (2 March in a leap year).
        assert_eq!(c("2021-03-31 10:00:00", "1mo"), utc("2021-03-03 10:00:00"));
        assert_eq!(c("2024-03-31 10:00:00", "1mo"), utc("2024-03-02 10:00:00"));
        assert_eq!(
            c("2021-03-31 10:00:00", "1y1mo"),
            utc("2020-03-02 10:00:00")
        );
        // 29 February − 1 year = 1 March.
        assert_eq!(c("2024-02-29 00:00:00", "1y"), utc("2023-03-01 00:00:00"));
        // Days borrow across months and years; hours are elapsed time.
        assert_eq!(c("2025-01-02 12:00:00", "3d"), utc("2024-12-30 12:00:00"));
        assert_eq!(
            c("2025-01-02 12:00:00", "1w13h"),
            utc("2024-12-25 23:00:00")
        );
        assert_eq!(
            c("2025-03-12 12:00:00", "2d12h"),
            utc("2025-03-10 00:00:00")
        );
        assert_eq!(c("2025-01-31 00:00:00", "13mo"), utc("2023-12-31 00:00:00"));
        // Off the calendar: everything is within.
        assert_eq!(c("2025-01-31 00:00:00", "20000y"), i64::MIN);
    }

    #[test]
    fn forget_cutoff_across_dst_follows_the_newest_snapshots_zone() {
        let z = berlin();
        let newest = utc("2024-10-31 09:00:00"); // 10:00 CET
        // 1mo back is 1 October 10:00 CEST, i.e. 08:00 UTC: DST-aware.
        assert_eq!(
            cutoff(newest, 3600, &dur("1mo"), &z),
            utc("2024-10-01 08:00:00")
        );
        // An offset this zone did not have then: fixed-offset arithmetic.
        assert_eq!(
            cutoff(newest, 7200, &dur("1mo"), &z),
            utc("2024-10-01 09:00:00")
        );
        assert_eq!(
            cutoff(newest, 3600, &dur("1mo"), &Zone::Local(TimeZone::UTC)),
            utc("2024-10-01 09:00:00")
        );
        // --utc ignores the recorded offset.
        assert_eq!(
            cutoff(newest, 3600, &dur("1mo"), &Zone::Utc),
            utc("2024-10-01 09:00:00")
        );
        // 7 days back from 12:00 CEST on 1 April is 12:00 CET on 25 March.
        let april = utc("2024-04-01 10:00:00");
        assert_eq!(
            cutoff(april, 7200, &dur("7d"), &z),
            utc("2024-03-25 11:00:00")
        );
        assert_eq!(
            cutoff(april, 7200, &dur("1w2h"), &z),
            utc("2024-03-25 09:00:00")
        );
        assert_eq!(z.offset_at(april), 7200);
        assert_eq!(Zone::Utc.offset_at(april), 0);
    }
}
