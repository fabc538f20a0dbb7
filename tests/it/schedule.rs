//! `schedule`: the systemd user timer and service it writes (into a temp
//! XDG_CONFIG_HOME, never the real one), checked by `systemd-analyze
//! verify`; the crontab line; `--list` and `--remove`; bad input. Nothing
//! is ever enabled or started.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::world::tree::{assert_same_state, fs_state};
use crate::world::{Run, World};

fn world() -> World {
    let w = World::new();
    let src = w.src().join("tree");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"alpha").unwrap();
    w.new_repo("r");
    w.new_archive("docs", "r", &[&src], &["--keep-daily", "7"]);
    w.new_archive("photos", "r", &[&src], &[]);
    fs::create_dir(w.path("xdg")).unwrap();
    w
}

/// Runs epygibus with XDG_CONFIG_HOME in the world.
fn run(w: &World, args: &[&str]) -> Run {
    let mut cmd = w.cmd();
    cmd.env("XDG_CONFIG_HOME", w.path("xdg")).args(args);
    w.exec(&mut cmd, &args.join(" "))
}

fn unit_dir(w: &World) -> PathBuf {
    w.path("xdg/systemd/user")
}

/// `systemd-analyze verify` of the units, or `None` where it is missing.
fn verify(units: &[&Path]) -> Option<std::process::Output> {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .ok()?;
    Some(out)
}

#[test]
fn schedule_writes_a_timer_and_service_that_systemd_accepts() {
    let w = world();
    let out = run(
        &w,
        &[
            "schedule",
            "-A",
            "docs",
            "-A",
            "photos",
            "--daily",
            "--systemd",
        ],
    )
    .code(0)
    .stdout;
    let service = unit_dir(&w).join("epygibus-docs.service");
    let timer = unit_dir(&w).join("epygibus-docs.timer");
    assert!(out.contains(&service.display().to_string()), "{out}");
    assert!(
        out.contains(
            "systemctl --user daemon-reload && systemctl --user enable --now epygibus-docs.timer"
        ),
        "{out}"
    );
    let s = fs::read_to_string(&service).unwrap();
    let t = fs::read_to_string(&timer).unwrap();
    let bin = w.bin().display().to_string();
    let exec: Vec<&str> = s.lines().filter(|l| l.starts_with("ExecStart=")).collect();
    assert_eq!(
        exec,
        [
            format!("ExecStart={bin} bu -A docs -A photos"),
            format!("ExecStart={bin} forget -A docs -A photos --skip-without-policy"),
        ],
        "{s}"
    );
    assert!(s.contains("Type=oneshot\n"), "{s}");
    assert!(s.contains("SuccessExitStatus=3\n"), "{s}");
    assert!(
        s.contains(&format!(
            "Environment=EPYGIBUS_CONFIG_DIR={}\n",
            w.config.display()
        )),
        "{s}"
    );
    assert!(t.contains("OnCalendar=daily\n"), "{t}");
    assert!(t.contains("Persistent=true\n"), "{t}");
    assert!(t.contains("WantedBy=timers.target\n"), "{t}");
    // Nothing enabled: no wants link.
    assert!(!unit_dir(&w).join("timers.target.wants").exists());

    match verify(&[&timer, &service]) {
        None => println!(
            "SKIP: systemd-analyze is not installed (Debian package `systemd`; .ci/run installs it): units not verified"
        ),
        Some(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success(),
                "systemd-analyze verify: {err}\n{s}\n{t}"
            );
            assert!(
                !err.contains("epygibus-docs"),
                "warnings about our units: {err}"
            );
        }
    }

    // --at with a calendar expression, --prune, another name.
    run(
        &w,
        &[
            "schedule",
            "-A",
            "docs",
            "--at",
            "Mon..Fri 22:00",
            "--name",
            "weeknights",
            "--prune",
            "--systemd",
        ],
    )
    .code(0);
    let s2 = fs::read_to_string(unit_dir(&w).join("epygibus-weeknights.service")).unwrap();
    assert!(
        s2.contains("forget -A docs --skip-without-policy --prune\n"),
        "{s2}"
    );
    let t2 = unit_dir(&w).join("epygibus-weeknights.timer");
    assert!(
        fs::read_to_string(&t2)
            .unwrap()
            .contains("OnCalendar=Mon..Fri 22:00\n")
    );
    if let Some(o) = verify(&[&t2, &unit_dir(&w).join("epygibus-weeknights.service")]) {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let list = run(&w, &["schedule", "--list", "--json"]).code(0).json();
    let schedules = list["schedules"].as_array().unwrap();
    assert_eq!(schedules.len(), 2, "{list}");
    assert_eq!(schedules[0]["name"], "docs");
    assert_eq!(
        schedules[0]["archives"],
        serde_json::json!(["docs", "photos"])
    );
    assert_eq!(schedules[0]["when"], "daily");
    assert_eq!(schedules[1]["when"], "Mon..Fri 22:00");
    assert_eq!(schedules[1]["enabled"], false);

    // Scheduling again replaces; removing takes both files (and a wants
    // link the user made by enabling it).
    let again = run(&w, &["schedule", "-A", "docs", "--hourly", "--systemd"])
        .code(0)
        .stdout;
    assert!(again.starts_with("Replaced "), "{again}");
    assert!(
        fs::read_to_string(&timer)
            .unwrap()
            .contains("OnCalendar=hourly\n")
    );
    let wants = unit_dir(&w).join("timers.target.wants");
    fs::create_dir(&wants).unwrap();
    std::os::unix::fs::symlink(&timer, wants.join("epygibus-docs.timer")).unwrap();
    let listed = run(&w, &["schedule", "--list"]).code(0).stdout;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("docs") && l.contains("yes")),
        "{listed}"
    );
    let out = run(&w, &["schedule", "--remove", "docs", "weeknights"])
        .code(0)
        .stdout;
    assert!(out.contains("daemon-reload"), "{out}");
    let left: Vec<_> = fs::read_dir(unit_dir(&w))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        ["timers.target.wants"],
        "only the empty wants directory is left"
    );
    assert_eq!(fs::read_dir(&wants).unwrap().count(), 0);
}

#[test]
fn schedule_prints_a_crontab_line_where_asked() {
    let w = world();
    let state = fs_state(&w.path("xdg"));
    let run = run(&w, &["schedule", "-A", "photos", "--at", "02:30", "--cron"]).code(0);
    let bin = w.bin().display().to_string();
    let line = run.stdout.trim();
    assert!(
        line.starts_with("30 2 * * * EPYGIBUS_CONFIG_DIR="),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "{bin} bu -A photos; s=$?; if [ $s -eq 0 ] || [ $s -eq 3 ]; then "
        )),
        "{line}"
    );
    assert!(
        line.ends_with("forget -A photos --skip-without-policy; fi"),
        "{line}"
    );
    assert!(run.stderr.contains("crontab -e"), "{run:?}");
    assert!(
        run.stderr.contains("`photos` stores no retention policy"),
        "{run:?}"
    );
    assert_same_state(
        &state,
        &fs_state(&w.path("xdg")),
        "a crontab line writes nothing",
    );
    // The line works: run by sh, it backs up and applies the policy.
    let sh = Command::new("sh")
        .arg("-c")
        .arg(line.split_once("* * * ").unwrap().1)
        .env("HOME", &w.home)
        .output()
        .unwrap();
    assert!(
        sh.status.success(),
        "{}",
        String::from_utf8_lossy(&sh.stderr)
    );
    assert_eq!(w.snapshot_names("photos").len(), 1);
}

#[test]
fn schedule_bad_input_changes_nothing() {
    let w = world();
    let state = (fs_state(&w.path("xdg")), fs_state(&w.config));
    let fail = |args: &[&str], code: i32, needle: &str| {
        let r = run(&w, args).code(code);
        assert!(r.stderr.contains(needle), "{needle}: {r:?}");
    };
    fail(
        &["schedule", "-A", "nope", "--daily", "--systemd"],
        1,
        "no archive named `nope`",
    );
    fail(
        &["schedule", "-A", "docs", "--at", "nonsense", "--systemd"],
        1,
        "not a systemd calendar expression",
    );
    fail(
        &["schedule", "-A", "docs", "--at", "25:00", "--cron"],
        1,
        "not a time cron understands",
    );
    fail(&["schedule", "-A", "docs"], 2, "--daily|--hourly|--at");
    fail(
        &["schedule", "-A", "docs", "--daily", "--hourly"],
        2,
        "cannot be used with",
    );
    fail(&["schedule", "--daily"], 2, "--archive");
    fail(
        &["schedule", "--list", "-A", "docs"],
        2,
        "cannot be used with",
    );
    fail(
        &[
            "schedule",
            "-A",
            "docs",
            "--daily",
            "--name",
            "a/b",
            "--systemd",
        ],
        1,
        "not a valid name",
    );
    fail(
        &["schedule", "--remove", "docs"],
        1,
        "there is no schedule `docs`",
    );
    assert_same_state(&state.0, &fs_state(&w.path("xdg")), "XDG_CONFIG_HOME");
    assert_same_state(&state.1, &fs_state(&w.config), "the configuration");
    // Units someone else wrote are left alone.
    let dir = unit_dir(&w);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("epygibus-docs.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    fail(
        &["schedule", "-A", "docs", "--daily", "--systemd"],
        1,
        "not written by `epygibus schedule`",
    );
    fail(
        &["schedule", "--remove", "docs"],
        1,
        "not written by `epygibus schedule`",
    );
    assert_eq!(
        fs::read_to_string(dir.join("epygibus-docs.service")).unwrap(),
        "[Service]\nExecStart=/bin/true\n"
    );
}
