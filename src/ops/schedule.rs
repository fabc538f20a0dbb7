//! `schedule`: backups that run by themselves. Where systemd runs, a user
//! timer and service (`epygibus-<schedule>.timer` / `.service` in
//! `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`): the
//! service runs `bu` for the archives, then `forget` with their stored
//! policies; the timer has `Persistent=true`, so a run missed while the
//! machine was off happens when it is next up. Elsewhere, a crontab line
//! to add by hand.
//!
//! Nothing is enabled or started here: the unit files are written and the
//! commands that enable them are returned for the user to run (a backup
//! tool should not change what the system runs behind its user's back, and
//! tests must not). Units carry `X-Epygibus-*` keys (ignored by systemd)
//! so `--list` and `--remove` find and touch only what this wrote.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::source::archive;
use super::{Context, OpError, Result};
use crate::config::Name;
use crate::fsio;

/// When scheduled runs happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Every day at midnight (systemd's `daily`).
    Daily,
    /// At the start of every hour.
    Hourly,
    /// A systemd calendar expression (`Mon..Fri 22:00`); for cron, five
    /// crontab fields or `HH:MM`.
    At(String),
}

impl When {
    fn calendar(&self) -> &str {
        match self {
            When::Daily => "daily",
            When::Hourly => "hourly",
            When::At(s) => s,
        }
    }
}

/// Which scheduler to write for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    Systemd,
    Cron,
}

impl Scheduler {
    /// systemd when it runs this machine (as `sd_booted` tells), else cron.
    pub fn detect() -> Scheduler {
        if Path::new("/run/systemd/system").is_dir() {
            Scheduler::Systemd
        } else {
            Scheduler::Cron
        }
    }
}

/// What `schedule` is asked to set up.
#[derive(Clone, Debug)]
pub struct ScheduleRequest {
    pub archives: Vec<String>,
    pub when: When,
    /// The schedule's name (default: the first archive's).
    pub name: Option<String>,
    /// Prune each repository after the forget.
    pub prune: bool,
    /// `None`: [`Scheduler::detect`].
    pub scheduler: Option<Scheduler>,
}

/// What `schedule` set up.
#[derive(Clone, Debug)]
pub enum Scheduled {
    Units {
        name: Name,
        service: PathBuf,
        timer: PathBuf,
        /// Units of that name existed and were replaced.
        replaced: bool,
        /// The commands that start the timer.
        enable: String,
        /// Archives without a stored retention policy (the forget passes
        /// over them).
        without_policy: Vec<Name>,
    },
    Cron {
        line: String,
        without_policy: Vec<Name>,
    },
}

/// One schedule found among the user's units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleInfo {
    pub name: String,
    pub archives: Vec<String>,
    pub when: String,
    pub service: PathBuf,
    pub timer: PathBuf,
    /// The timer is linked into `timers.target.wants` (enabled).
    pub enabled: bool,
}

const MARK: &str = "X-Epygibus-Archives=";
const WHEN_KEY: &str = "X-Epygibus-When=";

/// The directory of the user's systemd units.
pub fn unit_dir() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let config = match (var("XDG_CONFIG_HOME"), var("HOME")) {
        (Some(x), _) => PathBuf::from(x),
        (None, Some(h)) => PathBuf::from(h).join(".config"),
        (None, None) => {
            return Err(OpError::Invalid(
                "cannot find the user's configuration directory: set XDG_CONFIG_HOME or HOME"
                    .into(),
            ));
        }
    };
    Ok(config.join("systemd").join("user"))
}

fn unit_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("epygibus-{name}.service")),
        dir.join(format!("epygibus-{name}.timer")),
    )
}

/// Sets up scheduled runs of `bu` and the stored `forget` for the archives.
pub fn schedule(ctx: &Context, req: &ScheduleRequest) -> Result<Scheduled> {
    let mut archives: Vec<Name> = Vec::new();
    let mut without_policy = Vec::new();
    for a in &req.archives {
        let a = archive(ctx, a)?;
        a.check_writable()?;
        if super::forget::stored_policy(ctx, &a.spec.name)?.is_none() {
            without_policy.push(a.spec.name.clone());
        }
        if !archives.contains(&a.spec.name) {
            archives.push(a.spec.name);
        }
    }
    let Some(first) = archives.first() else {
        return Err(OpError::Invalid("give at least one archive with -A".into()));
    };
    let name: Name = match &req.name {
        Some(n) => n.parse()?,
        None => first.clone(),
    };
    let exe = std::env::current_exe()
        .map_err(|e| OpError::Invalid(format!("cannot tell where epygibus itself is: {e}")))?;
    let env = environment();
    let job = Job {
        exe: &exe,
        archives: &archives,
        prune: req.prune,
        env: &env,
    };
    match req.scheduler.unwrap_or_else(Scheduler::detect) {
        Scheduler::Cron => Ok(Scheduled::Cron {
            line: job.crontab(&cron_time(&req.when)?),
            without_policy,
        }),
        Scheduler::Systemd => {
            check_calendar(&req.when)?;
            let dir = unit_dir()?;
            fs::create_dir_all(&dir).map_err(|e| io(&dir, "create", e))?;
            let (service, timer) = unit_paths(&dir, name.as_str());
            for path in [&service, &timer] {
                if path.exists() && !is_ours(path) {
                    return Err(OpError::Invalid(format!(
                        "{} exists and was not written by `epygibus schedule`; choose another --name; nothing was changed",
                        path.display()
                    )));
                }
            }
            let replaced = service.exists() || timer.exists();
            write_replacing(&service, &job.service_unit(&req.when))?;
            write_replacing(&timer, &timer_unit(&name, &archives, &req.when))?;
            Ok(Scheduled::Units {
                enable: format!(
                    "systemctl --user daemon-reload && systemctl --user enable --now epygibus-{name}.timer"
                ),
                name,
                service,
                timer,
                replaced,
                without_policy,
            })
        }
    }
}

/// The variables that tell epygibus where its configuration and data
/// are, as set now, so the scheduled run uses the same.
fn environment() -> Vec<(String, String)> {
    ["EPYGIBUS_CONFIG_DIR", "EPYGIBUS_DATA_DIR"]
        .iter()
        .filter_map(|k| {
            let v = std::env::var(k).ok().filter(|v| !v.is_empty())?;
            let absolute = std::path::absolute(&v).ok()?;
            Some((k.to_string(), absolute.to_string_lossy().into_owned()))
        })
        .collect()
}

/// What a scheduled run does.
struct Job<'a> {
    exe: &'a Path,
    archives: &'a [Name],
    prune: bool,
    env: &'a [(String, String)],
}

impl Job<'_> {
    fn bu_args(&self) -> Vec<String> {
        let mut args = vec!["bu".to_owned()];
        for a in self.archives {
            args.extend(["-A".to_owned(), a.to_string()]);
        }
        args
    }

    fn forget_args(&self) -> Vec<String> {
        let mut args = vec!["forget".to_owned()];
        for a in self.archives {
            args.extend(["-A".to_owned(), a.to_string()]);
        }
        args.push("--skip-without-policy".to_owned());
        if self.prune {
            args.push("--prune".to_owned());
        }
        args
    }

    fn service_unit(&self, when: &When) -> String {
        let list: Vec<&str> = self.archives.iter().map(Name::as_str).collect();
        let exe = systemd_word(&self.exe.to_string_lossy());
        let mut text = format!(
            "# Written by `epygibus schedule`; change it with `epygibus schedule`, remove it\n\
             # with `epygibus schedule --remove`.\n\
             [Unit]\n\
             Description=epygibus: back up {archives}, then forget by the stored policies\n\
             {MARK}{spaced}\n\
             {WHEN_KEY}{when}\n\
             \n\
             [Service]\n\
             Type=oneshot\n",
            archives = list.join(", "),
            spaced = list.join(" "),
            when = when.calendar(),
        );
        for (k, v) in self.env {
            text += &format!("Environment={}\n", systemd_word(&format!("{k}={v}")));
        }
        for args in [self.bu_args(), self.forget_args()] {
            text += &format!("ExecStart={exe} {}\n", args.join(" "));
        }
        text += "# 3: the backup finished but skipped some files (listed in the journal);\n\
                 # the forget runs then too, but not after a failed backup.\n\
                 SuccessExitStatus=3\n\
                 Nice=10\n\
                 IOSchedulingClass=idle\n";
        text
    }

    fn crontab(&self, time: &str) -> String {
        let exe = shell_word(&self.exe.to_string_lossy());
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_word(v)))
            .collect();
        let prefix = if env.is_empty() {
            String::new()
        } else {
            format!("{} ", env.join(" "))
        };
        let line = format!(
            "{time} {prefix}{exe} {}; s=$?; if [ $s -eq 0 ] || [ $s -eq 3 ]; then {prefix}{exe} {}; fi",
            self.bu_args().join(" "),
            self.forget_args().join(" ")
        );
        // cron turns an unescaped % into a newline.
        line.replace('%', "\\%")
    }
}

fn timer_unit(name: &Name, archives: &[Name], when: &When) -> String {
    let list: Vec<&str> = archives.iter().map(Name::as_str).collect();
    format!(
        "# Written by `epygibus schedule`; remove it with `epygibus schedule --remove {name}`.\n\
         [Unit]\n\
         Description=epygibus: back up {archives} ({when})\n\
         {MARK}{spaced}\n\
         \n\
         [Timer]\n\
         OnCalendar={when}\n\
         # A run missed while the machine was off happens when it is next up.\n\
         Persistent=true\n\
         Unit=epygibus-{name}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        archives = list.join(", "),
        spaced = list.join(" "),
        when = when.calendar(),
    )
}

/// A word for `ExecStart=` or `Environment=`: quoted when it holds more
/// than plain path characters, with `%` (specifiers) and `$` (variables)
/// doubled so systemd keeps them.
fn systemd_word(s: &str) -> String {
    let s = s.replace('%', "%%").replace('$', "$$");
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,%$".contains(c));
    if plain && !s.is_empty() {
        s
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A word for `sh`: single-quoted unless plain.
fn shell_word(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c));
    if plain && !s.is_empty() {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The crontab time fields for `when`.
fn cron_time(when: &When) -> Result<String> {
    let bad = |s: &str| {
        OpError::Invalid(format!(
            "--at {s:?} is not a time cron understands: give five crontab fields (e.g. \"30 2 * * *\") or HH:MM"
        ))
    };
    Ok(match when {
        When::Daily => "0 0 * * *".to_owned(),
        When::Hourly => "0 * * * *".to_owned(),
        When::At(s) => {
            if let Some((h, m)) = s.trim().split_once(':') {
                let (h, m) = (h.parse::<u8>(), m.parse::<u8>());
                match (h, m) {
                    (Ok(h), Ok(m)) if h < 24 && m < 60 => format!("{m} {h} * * *"),
                    _ => return Err(bad(s)),
                }
            } else {
                let fields: Vec<&str> = s.split_whitespace().collect();
                let ok = fields.len() == 5
                    && fields.iter().all(|f| {
                        f.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "*/,-".contains(c))
                    });
                if !ok {
                    return Err(bad(s));
                }
                fields.join(" ")
            }
        }
    })
}

/// Refuses a calendar expression systemd would not take: asks
/// `systemd-analyze calendar` where it is installed (it only parses),
/// and refuses at least line breaks everywhere.
fn check_calendar(when: &When) -> Result<()> {
    let When::At(spec) = when else {
        return Ok(());
    };
    let bad = |why: String| {
        OpError::Invalid(format!(
            "--at {spec:?} is not a systemd calendar expression ({why}); e.g. \"Mon..Fri 22:00\" or \"*-*-* 03:30\" (see `man systemd.time`); nothing was changed"
        ))
    };
    if spec.trim().is_empty() || spec.chars().any(char::is_control) {
        return Err(bad("it is empty or holds control characters".into()));
    }
    match Command::new("systemd-analyze")
        .args(["calendar", spec])
        .output()
    {
        Ok(out) if !out.status.success() => {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(bad(err
                .lines()
                .next()
                .unwrap_or("refused")
                .trim()
                .to_owned()))
        }
        _ => Ok(()),
    }
}

/// True when the unit file at `path` was written by `schedule`.
fn is_ours(path: &Path) -> bool {
    fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l.starts_with(MARK)))
}

/// Writes a unit file on the machine's own disk, replacing an older one
/// by rename (atomic there).
fn write_replacing(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = fsio::TempFile::create_in(dir).map_err(|e| io(dir, "write into", e))?;
    temp.write_all(text.as_bytes())
        .map_err(|e| io(path, "write", e))?;
    temp.replace(path).map_err(|e| io(path, "replace", e))
}

fn io(path: &Path, action: &str, e: std::io::Error) -> OpError {
    OpError::Invalid(format!("could not {action} {}: {e}", path.display()))
}

/// The schedules among the user's systemd units, by name.
pub fn list() -> Result<Vec<ScheduleInfo>> {
    let dir = unit_dir()?;
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir, "list", e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file
            .strip_prefix("epygibus-")
            .and_then(|f| f.strip_suffix(".service"))
        else {
            continue;
        };
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key));
        let Some(archives) = value(MARK) else {
            continue;
        };
        let (service, timer) = unit_paths(&dir, name);
        let wants = dir
            .join("timers.target.wants")
            .join(format!("epygibus-{name}.timer"));
        found.push(ScheduleInfo {
            name: name.to_owned(),
            archives: archives.split_whitespace().map(str::to_owned).collect(),
            when: value(WHEN_KEY).unwrap_or("?").to_owned(),
            service,
            timer,
            enabled: wants.symlink_metadata().is_ok(),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Removes the units of schedule `name` (and its `timers.target.wants`
/// link, should the user have enabled it); returns the files removed.
/// Refused for units this did not write.
pub fn remove(name: &str) -> Result<Vec<PathBuf>> {
    let name: Name = name.parse()?;
    let dir = unit_dir()?;
    let (service, timer) = unit_paths(&dir, name.as_str());
    let wants = dir
        .join("timers.target.wants")
        .join(format!("epygibus-{name}.timer"));
    let present: Vec<&PathBuf> = [&service, &timer]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    if present.is_empty() {
        return Err(OpError::Invalid(format!(
            "there is no schedule `{name}` in {} (see `epygibus schedule --list`)",
            dir.display()
        )));
    }
    if let Some(p) = present.iter().find(|p| !is_ours(p)) {
        return Err(OpError::Invalid(format!(
            "{} was not written by `epygibus schedule`; left alone",
            p.display()
        )));
    }
    let mut removed = Vec::new();
    for path in [&wants, &timer, &service] {
        if path.symlink_metadata().is_ok() {
            fs::remove_file(path).map_err(|e| io(path, "remove", e))?;
            removed.push(path.clone());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_systemd_and_sh() {
        assert_eq!(systemd_word("/usr/bin/epygibus"), "/usr/bin/epygibus");
        assert_eq!(systemd_word("/a b/x"), "\"/a b/x\"");
        assert_eq!(systemd_word("/50%/$HOME"), "/50%%/$$HOME");
        assert_eq!(systemd_word("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(shell_word("/usr/bin/epygibus"), "/usr/bin/epygibus");
        assert_eq!(shell_word("/a b/it's"), "'/a b/it'\\''s'");
    }

    #[test]
    fn cron_times() {
        assert_eq!(cron_time(&When::Daily).unwrap(), "0 0 * * *");
        assert_eq!(cron_time(&When::Hourly).unwrap(), "0 * * * *");
        assert_eq!(cron_time(&When::At("22:05".into())).unwrap(), "5 22 * * *");
        assert_eq!(
            cron_time(&When::At("30 2 * * 1-5".into())).unwrap(),
            "30 2 * * 1-5"
        );
        for bad in ["24:00", "7", "Mon..Fri 22:00", "* * * *", "1 2 3 4 5; rm"] {
            assert!(cron_time(&When::At(bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn crontab_line_keeps_going_after_skipped_files_only() {
        let archives: Vec<Name> = vec!["docs".parse().unwrap(), "photos".parse().unwrap()];
        let env = vec![(
            "EPYGIBUS_CONFIG_DIR".to_owned(),
            "/home/me/my cfg".to_owned(),
        )];
        let job = Job {
            exe: Path::new("/opt/50%/epygibus"),
            archives: &archives,
            prune: true,
            env: &env,
        };
        assert_eq!(
            job.crontab("0 0 * * *"),
            "0 0 * * * EPYGIBUS_CONFIG_DIR='/home/me/my cfg' '/opt/50\\%/epygibus' bu -A docs -A photos; s=$?; if [ $s -eq 0 ] || [ $s -eq 3 ]; then EPYGIBUS_CONFIG_DIR='/home/me/my cfg' '/opt/50\\%/epygibus' forget -A docs -A photos --skip-without-policy --prune; fi"
        );
    }
}
