//! The two kinds of value a retention rule takes: a count
//! (`--keep-daily 7`, `--keep-daily unlimited`) and a calendar duration
//! (`--keep-within 1y2mo3w4d5h`).
//!
//! Durations are calendar units, not seconds, because that is what restic
//! means by them (its `ParseDuration` keeps years, months, days and hours
//! apart and subtracts them with Go's `AddDate`): "1mo" back from 31 March is
//! the same wall-clock time on "31 February", which the calendar rolls over
//! to 2 or 3 March, not a fixed 30 days. We add weeks (`w`, seven calendar
//! days) and spell months `mo`: restic's bare `m` means months, but people
//! read it as minutes, and a retention rule misread by a factor of 43 200
//! deletes backups. So a bare `m` is refused with a hint rather than guessed.

use std::fmt;
use std::str::FromStr;

/// How many buckets (or snapshots, for `--keep-last`) a `--keep-<unit>` rule
/// keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Count {
    /// Keep the newest snapshot of each of this many buckets. `N(0)` is a
    /// rule that keeps nothing, as restic treats `--keep-daily 0`.
    N(u32),
    /// No limit: keep the newest snapshot of every bucket (restic's
    /// `unlimited`, stored by restic as -1).
    Unlimited,
}

impl Count {
    /// True when the rule can keep at least one snapshot.
    pub fn is_active(self) -> bool {
        self != Count::N(0)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// Why a count could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseCountError {
    #[error(
        "count {0:?} is negative: give a number of snapshots (0 or more), or `unlimited` to keep all"
    )]
    Negative(String),
    #[error("count {0:?} is too large: give at most {max}", max = u32::MAX)]
    TooLarge(String),
    #[error("{0:?} is not a count: give a whole number of snapshots (0 or more) or `unlimited`")]
    NotANumber(String),
}

impl FromStr for Count {
    type Err = ParseCountError;

    /// Reads `unlimited` or a non-negative decimal integer. restic's
    /// internal -1 is refused like any negative number, with a hint to write
    /// `unlimited`, as restic's own command line does since 0.16.
    fn from_str(s: &str) -> Result<Count, ParseCountError> {
        let t = s.trim();
        if t == "unlimited" {
            return Ok(Count::Unlimited);
        }
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if let Some(rest) = t.strip_prefix('-')
            && digits(rest)
        {
            return Err(ParseCountError::Negative(s.to_owned()));
        }
        if !digits(t) {
            return Err(ParseCountError::NotANumber(s.to_owned()));
        }
        t.parse()
            .map(Count::N)
            .map_err(|_| ParseCountError::TooLarge(s.to_owned()))
    }
}

/// A calendar duration for `--keep-within*`: years, months, weeks, days and
/// hours, each kept apart (see the module notes for why).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Duration {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
}

impl Duration {
    /// True when every unit is zero: such a rule keeps nothing (restic
    /// treats `--keep-within 0d` as not given).
    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// Calendar days, weeks counted as seven days each.
    pub(super) fn total_days(&self) -> i64 {
        i64::from(self.days) + 7 * i64::from(self.weeks)
    }
}

impl fmt::Display for Duration {
    /// The canonical spelling, which parses back: `1y2mo3w4d5h`, zero units
    /// left out, `0h` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, "y"),
            (self.months, "mo"),
            (self.weeks, "w"),
            (self.days, "d"),
            (self.hours, "h"),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Why a duration could not be read. Each message is one sentence naming
/// the input and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    #[error("the duration is empty: write a number and a unit, e.g. 7d or 1y6mo")]
    Empty,
    #[error("duration {0:?} cannot be negative: write e.g. 7d")]
    Negative(String),
    #[error(
        "duration {input:?} has no number before {rest:?}: write a number and a unit, e.g. 7d or 1y6mo"
    )]
    NoNumber { input: String, rest: String },
    #[error(
        "duration {input:?} ends in the number {number} without a unit: add y (years), mo (months), w (weeks), d (days) or h (hours)"
    )]
    NoUnit { input: String, number: u64 },
    #[error(
        "duration {input:?} uses `m`, which could mean months or minutes: write {number}mo for months or give hours with h (minutes are not supported)"
    )]
    BareM { input: String, number: u64 },
    #[error(
        "duration {input:?} has an unknown unit {unit:?}: use y (years), mo (months), w (weeks), d (days) or h (hours)"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("duration {input:?} gives {unit} more than once: write each unit once, e.g. 1y6mo")]
    Repeated { input: String, unit: &'static str },
    #[error("duration {input:?} has a number too large for a retention rule: the limit is {max}", max = u32::MAX)]
    TooLarge { input: String },
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    /// Reads `<number><unit>` pairs, units `y`, `mo`, `w`, `d`, `h`, each at
    /// most once and in any order (restic also accepts any order). Spaces
    /// around the whole are ignored; spaces inside are not accepted.
    fn from_str(input: &str) -> Result<Duration, ParseDurationError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        if s.starts_with('-') {
            return Err(ParseDurationError::Negative(input.to_owned()));
        }
        let mut d = Duration::default();
        let mut seen = [false; 5];
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(ParseDurationError::NoNumber {
                    input: input.to_owned(),
                    rest: rest.to_owned(),
                });
            }
            let (num, after) = rest.split_at(digits);
            let number: u64 = num.parse().unwrap_or(u64::MAX);
            let unit_len = after.bytes().take_while(|b| !b.is_ascii_digit()).count();
            let (unit, next) = after.split_at(unit_len);
            let (slot, name) = match unit {
                "y" => (0, "years"),
                "mo" => (1, "months"),
                "w" => (2, "weeks"),
                "d" => (3, "days"),
                "h" => (4, "hours"),
                "" => {
                    return Err(ParseDurationError::NoUnit {
                        input: input.to_owned(),
                        number,
                    });
                }
                "m" => {
                    return Err(ParseDurationError::BareM {
                        input: input.to_owned(),
                        number,
                    });
                }
                other => {
                    return Err(ParseDurationError::UnknownUnit {
                        input: input.to_owned(),
                        unit: other.to_owned(),
                    });
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(ParseDurationError::Repeated {
                    input: input.to_owned(),
                    unit: name,
                });
            }
            let n = u32::try_from(number).map_err(|_| ParseDurationError::TooLarge {
                input: input.to_owned(),
            })?;
            *[
                &mut d.years,
                &mut d.months,
                &mut d.weeks,
                &mut d.days,
                &mut d.hours,
            ][slot] = n;
            rest = next;
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(s: &str) -> Duration {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forget_duration_grammar() {
        let all = Duration {
            years: 1,
            months: 2,
            weeks: 3,
            days: 4,
            hours: 5,
        };
        assert_eq!(dur("1y2mo3w4d5h"), all);
        assert_eq!(dur(" 5h4d3w2mo1y "), all, "any order, outer spaces");
        assert_eq!(all.to_string(), "1y2mo3w4d5h");
        assert_eq!(dur("7d").to_string(), "7d");
        assert_eq!(dur("0d"), Duration::default());
        assert!(dur("0d").is_zero());
        assert_eq!(Duration::default().to_string(), "0h");
        assert_eq!(dur("2w3d").total_days(), 17);
        for s in ["1y", "18mo", "2w", "36h", "1y2mo3w4d5h"] {
            assert_eq!(dur(s).to_string(), s, "canonical spelling round-trips");
        }
    }

    #[test]
    fn forget_duration_errors_are_one_clear_sentence() {
        use ParseDurationError as E;
        let err = |s: &str| s.parse::<Duration>().unwrap_err();
        assert_eq!(err(""), E::Empty);
        assert_eq!(err("   "), E::Empty);
        assert!(matches!(err("3m"), E::BareM { number: 3, .. }));
        let msg = err("1y3m").to_string();
        assert!(
            msg.contains("3mo for months") && msg.contains("minutes"),
            "{msg}"
        );
        assert!(matches!(err("5"), E::NoUnit { number: 5, .. }));
        assert!(matches!(err("1y5"), E::NoUnit { number: 5, .. }));
        assert!(matches!(err("d"), E::NoNumber { .. }));
        assert!(matches!(err("1y d"), E::UnknownUnit { .. }));
        assert!(matches!(err("7x"), E::UnknownUnit { .. }));
        assert!(matches!(err("7min"), E::UnknownUnit { .. }));
        assert!(matches!(err("7 d"), E::UnknownUnit { .. }));
        assert!(matches!(err("-7d"), E::Negative(_)));
        assert!(matches!(err("1d2d"), E::Repeated { unit: "days", .. }));
        assert!(matches!(err("99999999999d"), E::TooLarge { .. }));
        assert!(matches!(
            err("999999999999999999999999d"),
            E::TooLarge { .. }
        ));
        for s in ["", "3m", "5", "d", "7x", "-7d", "1d2d", "99999999999d"] {
            let msg = err(s).to_string();
            assert!(
                !msg.contains('\n') && msg.matches(": ").count() <= 1,
                "one sentence: {msg}"
            );
        }
    }

    #[test]
    fn forget_count_grammar() {
        assert_eq!("7".parse(), Ok(Count::N(7)));
        assert_eq!("0".parse(), Ok(Count::N(0)));
        assert_eq!(" 12 ".parse(), Ok(Count::N(12)));
        assert_eq!("unlimited".parse(), Ok(Count::Unlimited));
        assert_eq!(Count::Unlimited.to_string(), "unlimited");
        assert_eq!(Count::N(3).to_string(), "3");
        assert!(!Count::N(0).is_active());
        assert!(Count::Unlimited.is_active());
        let err = |s: &str| s.parse::<Count>().unwrap_err();
        assert!(matches!(err("-1"), ParseCountError::Negative(_)));
        assert!(err("-1").to_string().contains("`unlimited`"));
        assert!(matches!(err("-5"), ParseCountError::Negative(_)));
        assert!(matches!(err("seven"), ParseCountError::NotANumber(_)));
        assert!(matches!(err("+3"), ParseCountError::NotANumber(_)));
        assert!(matches!(err("3.5"), ParseCountError::NotANumber(_)));
        assert!(matches!(err(""), ParseCountError::NotANumber(_)));
        assert!(matches!(err("Unlimited"), ParseCountError::NotANumber(_)));
        assert!(matches!(err("99999999999"), ParseCountError::TooLarge(_)));
    }
}
