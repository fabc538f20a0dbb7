//! A retention policy kept in an archive's spec, so that `forget -A NAME`
//! without rules, and scheduled runs, apply the archive's own rules: one
//! `keep_<rule> = <value>` line per rule (`keep_daily = 7`,
//! `keep_within = 1y6mo`), values spelt as the `forget` options take them.
//! The spec copy beside the snapshots carries these lines like every other
//! spec key, so the policy survives a reinstall.
//!
//! A `keep_*` key this version does not know (written by a newer epygibus)
//! makes the stored policy unusable rather than ignored: applying the
//! rules that are known would remove snapshots the unknown one keeps. So
//! `keep_` names retention rules only; the one older key that starts so,
//! `keep_broken_soft_links`, is the exception.

use std::collections::BTreeMap;

use super::{Count, Duration, Policy, Unit};

/// The prefix every retention key starts with.
pub const KEY_PREFIX: &str = "keep_";
/// Spec keys with that prefix that are not retention rules.
const NOT_RULES: &[&str] = &["keep_broken_soft_links"];

/// Why a stored policy cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoredPolicyError {
    #[error("retention rule `{key} = {value}` is not valid: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error(
        "retention rule `{0}` is not one this epygibus knows (a newer version wrote it?); update epygibus or remove the line"
    )]
    UnknownRule(String),
    #[error(
        "the stored retention policy keeps nothing (every rule is 0); set one that keeps something with `epygibus policy`"
    )]
    Empty,
}

/// Every key, in the order of [`Policy`]'s `Display`.
fn keys() -> Vec<String> {
    let mut k = vec!["keep_last".to_owned()];
    k.extend(Unit::ALL.map(|u| format!("keep_{}", u.adjective())));
    k.push("keep_within".to_owned());
    k.extend(Unit::ALL.map(|u| format!("keep_within_{}", u.adjective())));
    k
}

impl Policy {
    /// The policy as spec fields: one per rule that can keep something.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut count = |key: String, c: Option<Count>| {
            if let Some(c) = c.filter(|c| c.is_active()) {
                out.insert(key, c.to_string());
            }
        };
        count("keep_last".into(), self.last);
        for u in Unit::ALL {
            count(format!("keep_{}", u.adjective()), self.count(u));
        }
        let mut within = |key: String, d: Option<Duration>| {
            if let Some(d) = d.filter(|d| !d.is_zero()) {
                out.insert(key, d.to_string());
            }
        };
        within("keep_within".into(), self.within);
        for u in Unit::ALL {
            within(
                format!("keep_within_{}", u.adjective()),
                self.within_unit(u),
            );
        }
        out
    }

    /// The policy stored in spec `fields`, `None` when there is no
    /// `keep_*` key at all.
    pub fn from_fields(
        fields: &BTreeMap<String, String>,
    ) -> Result<Option<Policy>, StoredPolicyError> {
        let known = keys();
        let mut policy = Policy::default();
        let mut any = false;
        for (key, value) in fields.iter().filter(|(k, _)| is_policy_key(k)) {
            if !known.contains(key) {
                return Err(StoredPolicyError::UnknownRule(key.clone()));
            }
            any = true;
            let bad = |reason: String| StoredPolicyError::BadValue {
                key: key.clone(),
                value: value.clone(),
                reason,
            };
            let rule = &key[KEY_PREFIX.len()..];
            if let Some(unit) = rule.strip_prefix("within") {
                let d: Duration = value.parse().map_err(|e| bad(format!("{e}")))?;
                let slot = match unit {
                    "" => &mut policy.within,
                    "_hourly" => &mut policy.within_hourly,
                    "_daily" => &mut policy.within_daily,
                    "_weekly" => &mut policy.within_weekly,
                    "_monthly" => &mut policy.within_monthly,
                    _ => &mut policy.within_yearly,
                };
                *slot = Some(d);
            } else {
                let c: Count = value.parse().map_err(|e| bad(format!("{e}")))?;
                let slot = match rule {
                    "last" => &mut policy.last,
                    "hourly" => &mut policy.hourly,
                    "daily" => &mut policy.daily,
                    "weekly" => &mut policy.weekly,
                    "monthly" => &mut policy.monthly,
                    _ => &mut policy.yearly,
                };
                *slot = Some(c);
            }
        }
        if !any {
            return Ok(None);
        }
        if policy.is_empty() {
            return Err(StoredPolicyError::Empty);
        }
        Ok(Some(policy))
    }
}

/// True for the spec keys that hold retention rules.
pub fn is_policy_key(key: &str) -> bool {
    key.starts_with(KEY_PREFIX) && !NOT_RULES.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::super::table_tests::policy;
    use super::*;

    #[test]
    fn forget_policy_fields_round_trip() {
        for text in [
            "--keep-last 3",
            "--keep-daily 7 --keep-weekly 4 --keep-monthly unlimited",
            "--keep-hourly 1 --keep-yearly 2 --keep-within 1y2mo3w4d5h",
            "--keep-within-hourly 5d --keep-within-daily 1mo --keep-within-weekly 1y --keep-within-monthly 2y --keep-within-yearly 10y",
        ] {
            let p = policy(text);
            let fields = p.to_fields();
            assert!(fields.keys().all(|k| is_policy_key(k)));
            assert_eq!(Policy::from_fields(&fields), Ok(Some(p.clone())), "{text}");
            assert_eq!(p.to_string(), text);
        }
        let p = policy("--keep-daily 7 --keep-weekly 0");
        assert_eq!(
            p.to_fields(),
            BTreeMap::from([("keep_daily".to_owned(), "7".to_owned())])
        );
    }

    #[test]
    fn forget_policy_fields_errors() {
        let f = |pairs: &[(&str, &str)]| {
            let mut m: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.insert("compress".into(), "true".into());
            m.insert("keep_broken_soft_links".into(), "false".into());
            Policy::from_fields(&m)
        };
        assert_eq!(f(&[]), Ok(None));
        assert!(matches!(
            f(&[("keep_daily", "-1")]),
            Err(StoredPolicyError::BadValue { .. })
        ));
        assert!(matches!(
            f(&[("keep_within", "3m")]),
            Err(StoredPolicyError::BadValue { .. })
        ));
        assert_eq!(
            f(&[("keep_tag", "x")]),
            Err(StoredPolicyError::UnknownRule("keep_tag".into()))
        );
        assert_eq!(f(&[("keep_daily", "0")]), Err(StoredPolicyError::Empty));
        let msg = f(&[("keep_daily", "seven")]).unwrap_err().to_string();
        assert!(msg.contains("keep_daily = seven"), "{msg}");
    }
}
