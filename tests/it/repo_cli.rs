//! Integration tests of the content-repository commands (`new_repo`, `lr`,
//! `repo_stats`, `list_content_items`, `prune`, `compress`, `unlock`),
//! driving the real binary on temp dirs.
//!
//! Every invocation sets `EPYGIBUS_CONFIG_DIR`, `EPYGIBUS_DATA_DIR` and
//! `HOME` to directories inside a per-test temp dir, so the real home is
//! never read or written. Storing content has no command yet, so that part
//! uses the library directly.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::world::files::gunzip;
use crate::world::packs::{ZipEntry, packs, unzip_entry, zip_entries};
use crate::world::tree::{State, assert_same_state, fs_state};
use crate::world::{Rng, World, lib_api, noise, text};
use epygibus::content::ContentToken;

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Parsed `list_content_items -R name`.
fn items(env: &World, name: &str) -> Vec<Item> {
    let out = env.ok(&["list_content_items", "-R", name]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["TOKEN", "REFS", "SIZE", "STORED", "FORM", "PACK"],
        "{out}"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "bad row {l:?}");
            Item {
                token: f[0].to_owned(),
                refs: f[1].parse().unwrap(),
                size: f[2].parse().unwrap(),
                stored: f[3].parse().unwrap(),
                form: f[4].to_owned(),
            }
        })
        .collect()
}

/// Parsed `repo_stats -R name`: the referenced and unreferenced rows.
fn stats(env: &World, name: &str) -> (StatsRow, StatsRow) {
    let out = env.ok(&["repo_stats", "-R", name]);
    let dir = env.repo_dir(name);
    assert_eq!(
        out.lines().next().unwrap(),
        format!("Repository `{name}` at {}", dir.display())
    );
    let row = |label: &str| {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .unwrap_or_else(|| panic!("no {label} row in {out}"));
        let cells: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cells.len(), 5, "{line:?}");
        StatsRow {
            items: cells[1].parse().unwrap(),
            references: cells[2].parse().unwrap(),
            content: cells[3].to_owned(),
            stored: cells[4].to_owned(),
        }
    };
    (row("referenced"), row("unreferenced"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    token: String,
    refs: u64,
    size: u64,
    stored: u64,
    form: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct StatsRow {
    items: u64,
    references: u64,
    content: String,
    stored: String,
}

impl StatsRow {
    fn zero() -> StatsRow {
        StatsRow {
            items: 0,
            references: 0,
            content: "0 B".into(),
            stored: "0 B".into(),
        }
    }
}

/// Sizes as the tool prints them (binary units, one decimal above 1 KiB).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The content's bytes, read through the library without a lock.
fn read_back(dir: &Path, token: &ContentToken) -> Vec<u8> {
    lib_api::read_content(dir, token).unwrap()
}

/// Names in the token's fan-out directory.
fn fan_out_entries(dir: &Path, token: &ContentToken) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("content").join(token.fan_out()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn gz_path(dir: &Path, token: &ContentToken) -> PathBuf {
    let hex = token.to_hex();
    dir.join("content")
        .join(&hex[..2])
        .join(format!("{hex}.gz"))
}

fn plain_path(dir: &Path, token: &ContentToken) -> PathBuf {
    let hex = token.to_hex();
    dir.join("content").join(&hex[..2]).join(hex)
}

fn gunzip_file(path: &Path) -> Vec<u8> {
    gunzip(&fs::read(path).unwrap())
}

/// The newest `index.N` file of a repository.
fn newest_index(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().as_bytes().starts_with(b"index."))
        .collect();
    names.sort();
    names.pop().expect("repository has an index")
}

/// A pid no process has: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn this_host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim_end()
        .to_owned()
}

/// Repository commands that take `-R NAME`, as argument prefixes.
const REPO_COMMANDS: [&[&str]; 5] = [
    &["repo_stats"],
    &["list_content_items"],
    &["prune"],
    &["compress"],
    &["compress", "-U"],
];

// ---------------------------------------------------------------------------
// new_repo, lr, repo_stats
// ---------------------------------------------------------------------------

#[test]
fn new_repo_creates_repositories_in_both_compression_modes() {
    let env = World::new();
    assert_eq!(env.ok(&["lr"]).lines().count(), 1, "only a header before");
    let gz = env.new_repo("home");
    let plain = env.new_repo_with("media", &["-U"]);

    for (dir, compression) in [(&gz, "gzip"), (&plain, "none")] {
        assert_eq!(
            dir.parent().unwrap().parent().unwrap(),
            fs::canonicalize(env.location())
                .unwrap()
                .join("epygibus.d")
                .join("repos"),
        );
        let format = fs::read_to_string(dir.join("format")).unwrap();
        assert!(format.starts_with("epygibus repository\n"), "{format}");
        assert!(format.contains("\nhash = blake3\n"), "{format}");
        assert!(
            format.contains(&format!("\ncompression = {compression}\n")),
            "{format}"
        );
        assert!(dir.join("index.000000000001").is_file());
        assert_eq!(fs::read_dir(dir.join("content")).unwrap().count(), 256);
        assert!(dir.join("content").join("00").is_dir());
        assert!(dir.join("content").join("ff").is_dir());
        assert!(dir.join("packs").is_dir(), "made once, not probed per pack");
        assert!(format.contains("\nformat = 2\n"), "{format}");
        assert!(!dir.join("lock").exists());
    }
    let uncompressed_msg = env.ok(&[
        "new_repo",
        "-U",
        "-L",
        env.location().to_str().unwrap(),
        "x3",
    ]);
    assert!(
        uncompressed_msg.contains("(uncompressed)"),
        "{uncompressed_msg}"
    );

    let lr = env.ok(&["lr"]);
    let rows: Vec<Vec<&str>> = lr.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "LOCATION"]);
    let gz_s = gz.display().to_string();
    let plain_s = plain.display().to_string();
    let x3 = env.repo_dir("x3").display().to_string();
    assert_eq!(
        rows[1..],
        [
            vec!["home", gz_s.as_str()],
            vec!["media", plain_s.as_str()],
            vec!["x3", x3.as_str()]
        ]
    );

    for name in ["home", "media", "x3"] {
        assert_eq!(stats(&env, name), (StatsRow::zero(), StatsRow::zero()));
        assert!(items(&env, name).is_empty());
    }
}

#[test]
fn new_repo_spec_file_is_plain_text() {
    let env = World::new();
    let dir = env.new_repo("home");
    let spec = fs::read_to_string(env.config_dir().join("repos").join("home")).unwrap();
    assert!(
        spec.contains(&format!("\npath = {}\n", dir.display())),
        "{spec}"
    );
    assert!(dir.is_absolute());
    // No temp leftovers anywhere after a successful run.
    assert!(
        fs_state(env.root()).keys().all(|p| !p
            .file_name()
            .unwrap()
            .as_bytes()
            .starts_with(b"tmp.")),
        "{:#?}",
        fs_state(env.root()).keys().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// Storing, counting, reading (library) seen through the commands
// ---------------------------------------------------------------------------

#[test]
fn same_content_twice_is_one_file_with_count_two() {
    let env = World::new();
    let dir = env.new_repo("home");
    // A small file (whole-buffer path, packed) and a large one (streaming
    // path, over the 1 MiB chunk, a loose file), each stored twice from two
    // different files.
    let small = text(5000, 1);
    let large = text(2_500_000, 2);
    let a = env.write_src("a", &small);
    let b = env.write_src("b", &small);
    let c = env.write_src("c", &large);
    let d = env.write_src("d", &large);
    let t = lib_api::store(&dir, &[&a, &b, &c, &d]);
    assert_eq!(t[0], t[1]);
    assert_eq!(t[2], t[3]);
    assert_ne!(t[0], t[2]);
    for (token, data) in [(t[0], &small), (t[2], &large)] {
        // The token is the BLAKE3 of the content.
        assert_eq!(token.to_hex(), blake3::hash(data).to_hex().as_str());
        assert_eq!(&read_back(&dir, &token), data);
        let item = items(&env, "home")
            .into_iter()
            .find(|i| i.token == token.to_hex())
            .unwrap();
        assert_eq!(item.refs, 2);
        assert_eq!(item.size, data.len() as u64);
        assert!(item.stored < item.size);
        assert_eq!(item.form, "gzip");
    }

    // The small one: one deflate entry named by its token in one pack,
    // which stock tools read.
    let pack = lib_api::pack_of(&dir, &t[0]).expect("small content is packed");
    assert_eq!(packs(&dir), std::slice::from_ref(&pack));
    let entries: Vec<ZipEntry> = zip_entries(&pack)
        .into_iter()
        .map(|e| ZipEntry {
            data_offset: 0,
            ..e
        })
        .collect();
    let small_item = items(&env, "home")
        .into_iter()
        .find(|i| i.token == t[0].to_hex())
        .unwrap();
    assert_eq!(
        entries,
        [ZipEntry {
            name: t[0].to_hex(),
            method: "deflated".into(),
            compressed: small_item.stored,
            size: small.len() as u64,
            data_offset: 0,
        }]
    );
    assert_eq!(
        unzip_entry(&pack, &t[0].to_hex()),
        small,
        "unzip -p of the pack"
    );
    assert!(!gz_path(&dir, &t[0]).exists() && !plain_path(&dir, &t[0]).exists());

    // The large one: exactly one file for its token in its fan-out dir,
    // gzipped.
    let hex = t[2].to_hex();
    assert_eq!(lib_api::pack_of(&dir, &t[2]), None);
    let entries: Vec<String> = fan_out_entries(&dir, &t[2])
        .into_iter()
        .filter(|n| n.starts_with(&hex[..2]) && n.len() >= 64)
        .collect();
    assert_eq!(entries, [format!("{hex}.gz")]);
    let gz = gz_path(&dir, &t[2]);
    assert_eq!(gunzip_file(&gz), large, "zcat of the content file");
    let large_item = items(&env, "home")
        .into_iter()
        .find(|i| i.token == hex)
        .unwrap();
    assert_eq!(large_item.stored, fs::metadata(&gz).unwrap().len());
    assert_eq!(items(&env, "home").len(), 2);
    // The fan-out dirs hold nothing but the large content file.
    let all_files: Vec<PathBuf> = fs_state(&dir.join("content"))
        .into_iter()
        .filter(|(_, n)| matches!(n, State::File(..)))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(all_files, [gz.strip_prefix(dir.join("content")).unwrap()]);

    let (referenced, unreferenced) = stats(&env, "home");
    assert_eq!(referenced.items, 2);
    assert_eq!(referenced.references, 4);
    assert_eq!(
        referenced.content,
        human(small.len() as u64 + large.len() as u64)
    );
    assert_eq!(unreferenced, StatsRow::zero());
}

#[test]
fn uncompressed_repo_stores_plain_files() {
    let env = World::new();
    let dir = env.new_repo_with("raw", &["-U"]);
    let data = text(20_000, 3);
    let large = text(700_000, 4);
    let a = env.write_src("a", &data);
    let b = env.write_src("b", &large);
    let t = lib_api::store(&dir, &[&a, &b]);
    // Small: a stored (uncompressed) pack entry.
    let pack = lib_api::pack_of(&dir, &t[0]).expect("packed");
    let entries = zip_entries(&pack);
    assert_eq!(
        entries,
        [ZipEntry {
            name: t[0].to_hex(),
            method: "stored".into(),
            compressed: 20_000,
            size: 20_000,
            data_offset: entries[0].data_offset,
        }]
    );
    // A stored entry is the bytes themselves, at its data offset.
    let raw = fs::read(&pack).unwrap();
    let at = entries[0].data_offset as usize;
    assert_eq!(&raw[at..at + 20_000], &data[..]);
    assert_eq!(unzip_entry(&pack, &t[0].to_hex()), data);
    // Large: a plain loose file.
    assert_eq!(fs::read(plain_path(&dir, &t[1])).unwrap(), large);
    assert!(!gz_path(&dir, &t[1]).exists());
    let items = items(&env, "raw");
    assert_eq!(items.len(), 2);
    for (item, size) in items.iter().map(|i| {
        let size = if i.token == t[0].to_hex() {
            20_000
        } else {
            700_000
        };
        (i, size)
    }) {
        assert_eq!(item.form, "plain");
        assert_eq!((item.size, item.stored), (size, size));
    }
}

#[test]
fn release_then_prune_removes_content() {
    let env = World::new();
    let dir = env.new_repo("home");
    // Gone: a loose file and most of a pack; kept: the rest of that pack.
    let gone_loose = text(800_000, 4);
    let gone_packed = text(100_000, 14);
    let kept = text(7000, 5);
    let files = [
        env.write_src("a", &gone_loose),
        env.write_src("b", &gone_packed),
        env.write_src("c", &kept),
    ];
    let t = lib_api::store(&dir, &[&files[0], &files[1], &files[2]]);
    let gone_file = gz_path(&dir, &t[0]);
    let old_pack = lib_api::pack_of(&dir, &t[1]).unwrap();
    assert_eq!(lib_api::pack_of(&dir, &t[2]), Some(old_pack.clone()));
    let loose_size = fs::metadata(&gone_file).unwrap().len();
    let old_pack_size = fs::metadata(&old_pack).unwrap().len();
    let stored_gone = lib_api::stored_size(&dir, &t[0]) + lib_api::stored_size(&dir, &t[1]);

    assert_eq!(lib_api::release(&dir, &t[..2]), 0);
    let (referenced, unreferenced) = stats(&env, "home");
    assert_eq!((referenced.items, referenced.references), (1, 1));
    assert_eq!(unreferenced.items, 2);
    assert_eq!(unreferenced.content, human(900_000));
    assert_eq!(unreferenced.stored, human(stored_gone));
    assert!(
        gone_file.exists() && old_pack.exists(),
        "release alone removes nothing"
    );

    let out = env.ok(&["prune", "-R", "home"]);
    // The pack was mostly dead: its live item moved to a new pack.
    let new_pack = lib_api::pack_of(&dir, &t[2]).unwrap();
    assert_ne!(new_pack, old_pack);
    assert_eq!(packs(&dir), std::slice::from_ref(&new_pack));
    let freed = loose_size + old_pack_size - fs::metadata(&new_pack).unwrap().len();
    assert_eq!(
        out,
        format!(
            "Removed 2 unreferenced content items: {} of content, {} freed on disk.\n\
             Packs: 0 removed, 1 rewritten (their live items copied into new packs).\n",
            human(900_000),
            human(freed)
        )
    );
    assert!(!gone_file.exists() && !old_pack.exists());
    assert!(!plain_path(&dir, &t[0]).exists());
    assert!(
        !fan_out_entries(&dir, &t[0])
            .iter()
            .any(|n| n.starts_with(&t[0].to_hex()))
    );
    assert_eq!(read_back(&dir, &t[2]), kept);
    assert_eq!(unzip_entry(&new_pack, &t[2].to_hex()), kept);
    assert_eq!(
        zip_entries(&new_pack).len(),
        1,
        "only the live item was copied"
    );
    assert!(!dir.join("lock").exists(), "prune released its lock");

    let items = items(&env, "home");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].token, t[2].to_hex());
    let (referenced, unreferenced) = stats(&env, "home");
    assert_eq!((referenced.items, referenced.references), (1, 1));
    assert_eq!(unreferenced, StatsRow::zero());

    assert_eq!(env.ok(&["prune", "-R", "home"]), "Nothing to do.\n");
    assert_eq!(env.ok(&["prune", "--repo", "home"]), "Nothing to do.\n");

    // Releasing the last item leaves a dead pack: removed whole.
    lib_api::release(&dir, &t[2..]);
    let out = env.ok(&["prune", "-R", "home"]);
    assert!(
        out.ends_with("Packs: 1 removed, 0 rewritten (their live items copied into new packs).\n"),
        "{out}"
    );
    assert_eq!(packs(&dir), Vec::<PathBuf>::new());
}

#[test]
fn compress_and_uncompress_keep_reads_exact() {
    let env = World::new();
    let dir = env.new_repo_with("raw", &["-U"]);
    let small = text(30_000, 6);
    let large = text(3_000_000, 7);
    let random = noise(30_000, 8);
    let files = [
        env.write_src("small", &small),
        env.write_src("large", &large),
        env.write_src("random", &random),
    ];
    let t = lib_api::store(&dir, &[&files[0], &files[1], &files[2]]);
    let datas = [&small, &large, &random];
    let plain_total = (small.len() + large.len()) as u64;
    let old_pack = lib_api::pack_of(&dir, &t[0]).unwrap();

    let out = env.ok(&["compress", "-R", "raw"]);
    let gz_total =
        lib_api::stored_size(&dir, &t[0]) + fs::metadata(gz_path(&dir, &t[1])).unwrap().len();
    assert_eq!(
        gz_total,
        lib_api::stored_size(&dir, &t[0]) + lib_api::stored_size(&dir, &t[1])
    );
    assert!(gz_total < plain_total);
    assert_eq!(
        out,
        format!(
            "Compressed 2 content items: {} -> {} on disk ({} saved).\n\
             1 items did not shrink and stay uncompressed.\n\
             Rewrote 1 packs.\n",
            human(plain_total),
            human(gz_total),
            human(plain_total - gz_total)
        )
    );
    // The pack holding the small item was rewritten: the small item is a
    // deflate entry now, the random one still stored.
    let pack = lib_api::pack_of(&dir, &t[0]).unwrap();
    assert_ne!(pack, old_pack);
    assert!(!old_pack.exists());
    assert_eq!(lib_api::pack_of(&dir, &t[2]), Some(pack.clone()));
    let methods: Vec<(String, String)> = zip_entries(&pack)
        .into_iter()
        .map(|e| (e.name, e.method))
        .collect();
    assert!(
        methods.contains(&(t[0].to_hex(), "deflated".into())),
        "{methods:?}"
    );
    assert!(
        methods.contains(&(t[2].to_hex(), "stored".into())),
        "{methods:?}"
    );
    for (i, token) in t.iter().enumerate() {
        assert_eq!(&read_back(&dir, token), datas[i], "item {i} after compress");
        if i != 1 {
            assert_eq!(&unzip_entry(&pack, &token.to_hex()), datas[i]);
        }
    }
    assert!(!plain_path(&dir, &t[1]).exists());
    assert_eq!(gunzip_file(&gz_path(&dir, &t[1])), large);
    let forms: Vec<(String, String)> = items(&env, "raw")
        .into_iter()
        .map(|i| (i.token, i.form))
        .collect();
    for (i, token) in t.iter().enumerate() {
        let want = if i < 2 { "gzip" } else { "plain" };
        assert!(
            forms.contains(&(token.to_hex(), want.to_owned())),
            "{forms:?}"
        );
    }
    // The random item is still not worth compressing (and its pack is
    // not rewritten for nothing).
    assert_eq!(
        env.ok(&["compress", "-R", "raw"]),
        "Nothing to do.\n1 items did not shrink and stay uncompressed.\n"
    );
    assert!(pack.exists());

    let out = env.ok(&["compress", "-U", "-R", "raw"]);
    assert_eq!(
        out,
        format!(
            "Uncompressed 2 content items: {} -> {} on disk ({} added).\n\
             Rewrote 1 packs.\n",
            human(gz_total),
            human(plain_total),
            human(plain_total - gz_total)
        )
    );
    let pack = lib_api::pack_of(&dir, &t[0]).unwrap();
    for (i, token) in t.iter().enumerate() {
        assert_eq!(
            &read_back(&dir, token),
            datas[i],
            "item {i} after uncompress"
        );
        assert!(!gz_path(&dir, token).exists(), "item {i}");
    }
    assert_eq!(&fs::read(plain_path(&dir, &t[1])).unwrap(), &large);
    assert!(zip_entries(&pack).iter().all(|e| e.method == "stored"));
    assert!(
        items(&env, "raw")
            .iter()
            .all(|i| i.form == "plain" && i.stored == i.size)
    );
    assert_eq!(
        env.ok(&["compress", "--uncompress", "--repo", "raw"]),
        "Nothing to do.\n"
    );
    // No temp files left in the fan-out dirs, and the lock is gone.
    assert!(
        fs_state(&dir)
            .keys()
            .all(|p| !p.file_name().unwrap().as_bytes().starts_with(b"tmp.")),
    );
    assert!(!dir.join("lock").exists());
}

// ---------------------------------------------------------------------------
// Bad input: status 1, one line naming the problem, nothing changed
// ---------------------------------------------------------------------------

#[test]
fn unknown_repository_is_reported_and_nothing_changes() {
    let env = World::new();
    env.new_repo("home");
    let before = fs_state(env.root());
    for cmd in REPO_COMMANDS.iter().copied().chain([&["unlock"][..]]) {
        let mut args = cmd.to_vec();
        args.extend(["-R", "nope"]);
        let err = env.fail(&args);
        assert!(
            err.contains("no repository named `nope`") && err.contains("epygibus lr"),
            "{args:?}: {err}"
        );
        assert_same_state(&before, &fs_state(env.root()), &format!("{args:?}"));
    }
}

#[test]
fn repository_name_already_used_is_refused() {
    let env = World::new();
    env.new_repo("home");
    let other = env.root().join("other");
    fs::create_dir(&other).unwrap();
    let before = fs_state(env.root());
    for loc in [env.location(), other] {
        for extra in [None, Some("-U")] {
            let loc = format!("--location={}", loc.display());
            let mut args = vec!["new_repo", loc.as_str(), "home"];
            args.extend(extra);
            let err = env.fail(&args);
            assert!(
                err.contains("`home` already exists")
                    && err.contains(
                        &env.config_dir()
                            .join("repos")
                            .join("home")
                            .display()
                            .to_string()
                    ),
                "{err}"
            );
            assert_same_state(&before, &fs_state(env.root()), &format!("{args:?}"));
        }
    }
}

#[test]
fn names_outside_the_portable_set_are_refused() {
    let env = World::new();
    env.new_repo("home");
    let before = fs_state(env.root());
    let long = "x".repeat(65);
    for bad in [
        "a b",
        "a:b",
        ".x",
        "a/b",
        "../x",
        "é",
        "a\\b",
        "",
        long.as_str(),
    ] {
        let loc = format!("--location={}", env.location().display());
        let err = env.fail(&["new_repo", &loc, bad]);
        assert!(
            err.contains(&format!("`{bad}` is not a valid name")),
            "{bad:?}: {err}"
        );
        for cmd in REPO_COMMANDS.iter().copied().chain([&["unlock"][..]]) {
            let mut args = cmd.to_vec();
            args.extend(["-R", bad]);
            let err = env.fail(&args);
            assert!(err.contains("is not a valid name"), "{args:?}: {err}");
        }
        assert_same_state(&before, &fs_state(env.root()), &format!("name {bad:?}"));
    }
}

#[test]
fn location_that_is_a_regular_file_is_refused() {
    let env = World::new();
    let file = env.write_src("not-a-dir", b"x");
    let before = fs_state(env.root());
    let err = env.fail(&[
        "new_repo",
        &format!("--location={}", file.display()),
        "home",
    ]);
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    assert_same_state(&before, &fs_state(env.root()), "new_repo on a file");
}

#[test]
fn location_that_does_not_exist_is_refused() {
    let env = World::new();
    let missing = env.root().join("missing").join("deeper");
    let before = fs_state(env.root());
    let err = env.fail(&["new_repo", "-L", missing.to_str().unwrap(), "home"]);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert_same_state(&before, &fs_state(env.root()), "new_repo on a missing dir");
    assert!(!missing.exists());
}

#[test]
fn location_that_is_not_writable_is_refused() {
    let env = World::new();
    let before = fs_state(env.root());
    let err = env.fail(&["new_repo", "--location=/proc", "home"]);
    assert!(err.contains("/proc/epygibus.d"), "{err}");
    assert!(err.contains("could not create directory"), "{err}");
    assert_same_state(&before, &fs_state(env.root()), "new_repo on /proc");
    assert!(!Path::new("/proc/epygibus.d").exists());
    assert!(!env.config_dir().join("repos").join("home").exists());
}

#[test]
fn corrupt_format_file_is_reported_and_left_alone() {
    let good = "epygibus repository\nformat = 1\nhash = blake3\ncompression = gzip\n";
    let variants: [(&str, &[u8], &str); 5] = [
        (
            "garbage",
            b"\x00\x01 this is not a format file \xff\n",
            "it is not text",
        ),
        ("text garbage", b"hello world\n", "first line"),
        (
            "truncated",
            &good.as_bytes()[..good.len() / 2],
            "its hash is not `blake3`",
        ),
        ("empty", b"", "first line"),
        (
            "future",
            b"epygibus repository\nformat = 4\nhash = blake3\ncompression = gzip\n",
            "format 4 is not supported",
        ),
    ];
    for (what, bytes, reason) in variants {
        let env = World::new();
        let dir = env.new_repo("home");
        let a = env.write_src("a", &text(3000, 9));
        lib_api::store(&dir, &[&a]);
        let format = dir.join("format");
        fs::write(&format, bytes).unwrap();
        let before = fs_state(env.root());
        for cmd in REPO_COMMANDS {
            let mut args = cmd.to_vec();
            args.extend(["-R", "home"]);
            let err = env.fail(&args);
            assert!(
                err.contains(&format!(
                    "repository format file {} is not valid",
                    format.display()
                )),
                "{what} {args:?}: {err}"
            );
            assert!(err.contains(reason), "{what} {args:?}: {err}");
            assert_same_state(&before, &fs_state(env.root()), &format!("{what} {args:?}"));
        }
        assert_eq!(fs::read(&format).unwrap(), bytes);
    }
}

#[test]
fn missing_format_file_says_not_a_repository() {
    let env = World::new();
    let dir = env.new_repo("home");
    fs::remove_file(dir.join("format")).unwrap();
    let before = fs_state(env.root());
    for cmd in REPO_COMMANDS {
        let mut args = cmd.to_vec();
        args.extend(["-R", "home"]);
        let err = env.fail(&args);
        assert!(
            err.contains(&format!("{} is not an epygibus repository", dir.display())),
            "{args:?}: {err}"
        );
        assert_same_state(&before, &fs_state(env.root()), &format!("{args:?}"));
    }
}

#[test]
fn corrupt_index_is_reported_and_left_byte_identical() {
    // (what, populated before corrupting, how to corrupt)
    type Corrupt = fn(&[u8]) -> Vec<u8>;
    let variants: [(&str, bool, Corrupt); 4] = [
        ("garbage", false, |_| b"garbage, not an index\n".to_vec()),
        ("garbage", true, |_| noise(4096, 10)),
        ("truncated to half", false, |b| b[..b.len() / 2].to_vec()),
        ("truncated to half", true, |b| b[..b.len() / 2].to_vec()),
    ];
    for (what, populated, corrupt) in variants {
        let env = World::new();
        let dir = env.new_repo("home");
        if populated {
            let a = env.write_src("a", &text(3000, 11));
            let b = env.write_src("b", &text(4000, 12));
            let t = lib_api::store(&dir, &[&a, &b]);
            assert_eq!(lib_api::release(&dir, &t[..1]), 0);
        }
        let index = newest_index(&dir);
        if !populated {
            assert_eq!(index, dir.join("index.000000000001"));
        }
        let bad = corrupt(&fs::read(&index).unwrap());
        fs::write(&index, &bad).unwrap();
        let before = fs_state(env.root());
        for cmd in REPO_COMMANDS {
            let mut args = cmd.to_vec();
            args.extend(["-R", "home"]);
            let err = env.fail(&args);
            assert!(
                err.contains(&format!(
                    "reference-count index {} is corrupt",
                    index.display()
                )),
                "{what} (populated {populated}) {args:?}: {err}"
            );
            assert_eq!(fs::read(&index).unwrap(), bad, "{what} {args:?}");
            assert_same_state(&before, &fs_state(env.root()), &format!("{what} {args:?}"));
        }
    }
}

#[test]
fn lock_held_by_another_host_is_reported_then_unlocked() {
    let env = World::new();
    let dir = env.new_repo("home");
    let a = env.write_src("a", &text(3000, 13));
    let t = lib_api::store(&dir, &[&a]);
    assert_eq!(lib_api::release(&dir, &t), 0);
    let lock = dir.join("lock");
    let lock_text =
        "host = otherhost\npid = 12345\nstarted = 1700000000\ncommand = epygibus bu -A x\n";
    fs::write(&lock, lock_text).unwrap();
    let before = fs_state(env.root());

    for args in [
        &["prune", "-R", "home", "--lock-wait", "0"][..],
        &["--lock-wait", "0", "prune", "-R", "home"],
        &["--lock_wait", "0", "prune", "-R", "home"],
        &["prune", "-R", "home", "--lock_wait=0"],
        &["compress", "-R", "home", "--lock-wait=0"],
        &["compress", "-U", "-R", "home", "--lock-wait=0"],
    ] {
        let err = env.fail(args);
        assert!(err.contains("locked by"), "{args:?}: {err}");
        assert!(err.contains("otherhost"), "{args:?}: {err}");
        assert!(err.contains("epygibus bu -A x"), "{args:?}: {err}");
        assert!(err.contains("12345"), "{args:?}: {err}");
        assert_eq!(fs::read_to_string(&lock).unwrap(), lock_text);
        assert_same_state(&before, &fs_state(env.root()), &format!("{args:?}"));
    }
    // Reading needs no lock.
    let (_, unreferenced) = stats(&env, "home");
    assert_eq!(unreferenced.items, 1);

    let out = env.ok(&["unlock", "-R", "home"]);
    assert!(out.starts_with("Removed the lock held by "), "{out}");
    assert!(
        out.contains("otherhost") && out.contains("epygibus bu -A x"),
        "{out}"
    );
    assert!(!lock.exists());
    assert_eq!(
        env.ok(&["unlock", "-R", "home"]),
        "Repository `home` was not locked.\n"
    );

    let out = env.ok(&["prune", "-R", "home", "--lock-wait", "0"]);
    assert!(
        out.starts_with("Removed 1 unreferenced content items"),
        "{out}"
    );
    assert!(!gz_path(&dir, &t[0]).exists());
    assert!(!lock.exists());
}

#[test]
fn unlock_removes_an_unreadable_lock_file() {
    let env = World::new();
    let dir = env.new_repo("home");
    let lock = dir.join("lock");
    fs::write(&lock, "not a lock\n").unwrap();
    env.ok(&["unlock", "-R", "home"]);
    assert!(!lock.exists());
    assert_eq!(
        env.ok(&["prune", "-R", "home", "--lock-wait", "0"]),
        "Nothing to do.\n"
    );
}

#[test]
fn unlock_says_it_removed_an_unreadable_lock_file() {
    let env = World::new();
    let dir = env.new_repo("home");
    let lock = dir.join("lock");
    fs::write(&lock, "not a lock\n").unwrap();
    assert_eq!(
        env.ok(&["unlock", "-R", "home"]),
        "Removed an unreadable lock file.\n"
    );
    assert!(!lock.exists());
}

#[test]
fn stale_lock_of_a_dead_local_process_is_broken() {
    let env = World::new();
    let dir = env.new_repo("home");
    let a = env.write_src("a", &text(3000, 14));
    let t = lib_api::store(&dir, &[&a]);
    assert_eq!(lib_api::release(&dir, &t), 0);
    let lock = dir.join("lock");
    let pid = dead_pid();
    fs::write(
        &lock,
        format!(
            "host = {}\npid = {pid}\nstarted = 1700000000\ncommand = epygibus bu -A home\n",
            this_host()
        ),
    )
    .unwrap();
    let out = env.ok(&["prune", "-R", "home", "--lock-wait", "0"]);
    assert!(
        out.starts_with("Removed 1 unreferenced content items"),
        "{out}"
    );
    assert!(!lock.exists());
    assert!(!gz_path(&dir, &t[0]).exists());
    assert!(
        fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .as_bytes()
            .starts_with(b"tmp.")),
        "the broken lock was moved aside and removed"
    );
}

// ---------------------------------------------------------------------------
// Failed new_repo leaves nothing behind
// ---------------------------------------------------------------------------

/// Entries named `tmp.*` directly in `dir`.
fn temp_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp."))
        .collect()
}

#[test]
fn new_repo_over_an_existing_repository_directory_leaves_nothing() {
    let first = World::new();
    let second = World::new();
    let dir = first.new_repo("home");
    let before_first = fs_state(first.root());
    let before_second = fs_state(second.root());
    let loc = format!("--location={}", first.location().display());
    for extra in [None, Some("-U")] {
        let mut args = vec!["new_repo", loc.as_str(), "home"];
        args.extend(extra);
        let err = second.fail(&args);
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("already exists"), "{err}");
        assert!(!second.config_dir().join("repos").join("home").exists());
        assert!(temp_entries(dir.parent().unwrap()).is_empty());
        assert_same_state(&before_first, &fs_state(first.root()), "first env");
        assert_same_state(&before_second, &fs_state(second.root()), "second env");
    }
    // The first repository is intact.
    assert_eq!(stats(&first, "home"), (StatsRow::zero(), StatsRow::zero()));
}

#[test]
fn new_repo_whose_spec_cannot_be_written_is_rolled_back() {
    let env = World::new();
    // `repos` in the config dir is a file, so the spec cannot be written
    // after the repository directory was built.
    fs::write(env.config_dir().join("repos"), b"in the way").unwrap();
    let before = fs_state(env.root());
    let err = env.fail(&["new_repo", "-L", env.location().to_str().unwrap(), "home"]);
    assert!(
        err.contains(&env.config_dir().join("repos").display().to_string()),
        "{err}"
    );
    assert_same_state(&before, &fs_state(env.root()), "failed new_repo");
    assert!(!env.location().join("epygibus.d").exists());
}

#[test]
fn new_repo_failing_inside_an_existing_user_dir_keeps_that_dir() {
    let env = World::new();
    let dir = env.new_repo("home");
    let user_dir = dir.parent().unwrap().to_owned();
    fs::remove_file(env.config_dir().join("repos").join("home")).unwrap();
    // Now `home` is free in the config but taken at the location.
    let before = fs_state(env.root());
    let err = env.fail(&["new_repo", "-L", env.location().to_str().unwrap(), "home"]);
    assert!(err.contains("already exists"), "{err}");
    assert_same_state(&before, &fs_state(env.root()), "failed new_repo");
    assert!(temp_entries(&user_dir).is_empty());
}

// ---------------------------------------------------------------------------
// Help, aliases, odd arguments
// ---------------------------------------------------------------------------

#[test]
fn every_command_has_help() {
    let env = World::new();
    let commands: [(&str, &[&str]); 7] = [
        (
            "new_repo",
            &["--location", "--uncompressed", "-U", "<NAME>"],
        ),
        ("lr", &[]),
        ("repo_stats", &["--repo", "-R"]),
        ("list_content_items", &["--repo", "-R"]),
        ("prune", &["--repo", "-R"]),
        ("compress", &["--repo", "--uncompress", "-U"]),
        ("unlock", &["--repo", "-R"]),
    ];
    let top = env.ok(&["--help"]);
    for (name, options) in commands {
        assert!(top.contains(name), "top-level help lacks {name}: {top}");
        for form in [&[name, "--help"][..], &[name, "-h"], &["help", name]] {
            let out = env.ok(form);
            assert!(
                out.contains(&format!("Usage: epygibus {name}")),
                "{form:?}: {out}"
            );
            assert!(out.contains("--lock-wait"), "{form:?}: {out}");
            for opt in options {
                assert!(out.contains(opt), "{form:?} lacks {opt}: {out}");
            }
        }
    }
    for alias in ["new-repo", "repo-stats", "list-content-items"] {
        let out = env.ok(&[alias, "--help"]);
        assert!(out.contains("Usage: epygibus"), "{alias}: {out}");
    }
    assert!(env.ok(&["--version"]).starts_with("epygibus "));
    // Help never created anything.
    assert!(fs::read_dir(env.config_dir()).unwrap().next().is_none());
}

#[test]
fn underscore_and_kebab_spellings_are_accepted() {
    let env = World::new();
    let loc = env.location();
    let loc = loc.to_str().unwrap();
    env.ok(&["new-repo", "--location", loc, "kebab"]);
    env.ok(&["new_repo", "--lock_wait=5", "--location", loc, "under"]);
    for name in ["kebab", "under"] {
        env.ok(&["repo-stats", "-R", name]);
        env.ok(&["list-content-items", "--repo", name]);
        assert_eq!(
            env.ok(&["prune", "-R", name, "--lock_wait", "1"]),
            "Nothing to do.\n"
        );
        assert_eq!(
            env.ok(&["--lock-wait=1", "compress", "-R", name]),
            "Nothing to do.\n"
        );
    }
}

#[test]
fn usage_errors_and_odd_input_never_panic() {
    let env = World::new();
    env.new_repo("home");
    let bad_utf8 = OsStr::from_bytes(b"ho\xffme");
    let cases: Vec<Vec<&OsStr>> = [
        &[][..],
        &["frobnicate"],
        &["repo_stats"],
        &["prune", "-R"],
        &["new_repo", "x"],
        &["new_repo", "--location="],
        &["--lock-wait", "-1", "lr"],
        &["--lock-wait", "99999999999999999999999", "lr"],
        &["--lock-wait", "soon", "lr"],
        &["compress", "-U", "-U", "-R", "home"],
    ]
    .iter()
    .map(|a| a.iter().map(OsStr::new).collect())
    .chain([
        vec![OsStr::new("repo_stats"), OsStr::new("-R"), bad_utf8],
        vec![
            OsStr::new("new_repo"),
            OsStr::new("-L"),
            OsStr::new("loc"),
            bad_utf8,
        ],
        vec![
            OsStr::new("new_repo"),
            OsStr::new("-L"),
            bad_utf8,
            OsStr::new("x"),
        ],
    ])
    .collect();
    let before = fs_state(env.root());
    for args in cases {
        let out = env.run(&args);
        assert_ne!(out.code, Some(0), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} should say why");
        assert_same_state(&before, &fs_state(env.root()), &format!("{args:?}"));
    }
    // Large but valid lock wait on an unlocked repository.
    assert_eq!(
        env.ok(&["--lock-wait", "18446744073709551615", "prune", "-R", "home"]),
        "Nothing to do.\n"
    );
}

#[test]
fn config_dir_that_is_a_file_is_an_error_not_a_panic() {
    let env = World::new();
    let file = env.write_src("cfg", b"x");
    let loc = env.location().display().to_string();
    let before = fs_state(env.root());
    for args in [
        &["lr"][..],
        &["repo_stats", "-R", "home"],
        &["new_repo", "-L", &loc, "home"],
    ] {
        let out = env
            .exec(
                env.cmd().env("EPYGIBUS_CONFIG_DIR", &file).args(args),
                &format!("{args:?}"),
            )
            .utf8();
        assert_eq!(out.code, Some(1), "{args:?}");
        let stderr = out.stderr;
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&file.display().to_string()),
            "{args:?}: {stderr}"
        );
        assert_same_state(&before, &fs_state(env.root()), &format!("{args:?}"));
    }
}

/// `epygibus lr | head -1` and the like: output to a pipe nobody reads
/// must not make the command panic (exit status 101 and a backtrace).
#[test]
fn closed_stdout_is_not_a_panic() {
    let env = World::new();
    let dir = env.new_repo("home");
    // Enough items that the listing cannot fit in any pipe buffer.
    let files: Vec<PathBuf> = (0..1000)
        .map(|i| env.write_src(&format!("f{i}"), &text(100, i)))
        .collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    lib_api::store(&dir, &refs);
    let loc = env.location().display().to_string();
    let mut panicked = Vec::new();
    for args in [
        &["lr"][..],
        &["repo_stats", "-R", "home"],
        &["list_content_items", "-R", "home"],
        &["prune", "-R", "home"],
        &["compress", "-R", "home"],
        &["unlock", "-R", "home"],
        &["new_repo", "-L", &loc, "other"],
        &["--help"],
        &["prune", "--help"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env.cmd().args(args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("panicked") || out.status.code() == Some(101) {
            panicked.push(format!("{args:?}: {}", stderr.lines().nth(1).unwrap_or("")));
        }
    }
    assert!(panicked.is_empty(), "{panicked:#?}");
}

// ---------------------------------------------------------------------------
// Throughput measurement (run by hand, release build)
// ---------------------------------------------------------------------------

/// Stores one 1 GB file in a gzip and an uncompressed repository and 10,000
/// small files in a gzip repository, printing timings. Run with
/// `cargo test --release --test it -- --ignored --nocapture measure_store_throughput`.
#[test]
#[ignore = "measurement; takes a while and needs ~3 GB of disk"]
fn measure_store_throughput() {
    const BIG: usize = 1_000_000_000;
    let env = World::new();
    let gz = env.new_repo("gz");
    let plain = env.new_repo_with("plain", &["-U"]);
    let many = env.new_repo("many");

    // Moderately compressible: 64 KiB blocks, each half text half noise.
    let big = env.src().join("big");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(fs::File::create(&big).unwrap());
        let mut written = 0usize;
        let mut seed = 0u64;
        while written < BIG {
            seed += 1;
            let n = (BIG - written).min(32 * 1024);
            f.write_all(&text(n, seed)).unwrap();
            written += n;
            let n = (BIG - written).min(32 * 1024);
            f.write_all(&noise(n, seed)).unwrap();
            written += n;
        }
        f.into_inner().unwrap().sync_all().unwrap();
    }
    let mb = BIG as f64 / 1e6;
    for (label, dir) in [("gzip", &gz), ("uncompressed (-U)", &plain)] {
        let start = Instant::now();
        let t = lib_api::store(dir, &[&big])[0];
        let secs = start.elapsed().as_secs_f64();
        let stored = lib_api::stored_size(dir, &t);
        println!(
            "1 GB file, {label}: {secs:.2} s, {:.1} MB/s, stored {:.1} MB ({:.0}%)",
            mb / secs,
            stored as f64 / 1e6,
            stored as f64 * 100.0 / BIG as f64
        );
    }
    // Storing the same content again only hashes it.
    let start = Instant::now();
    lib_api::store(&gz, &[&big]);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "1 GB file again (already stored, gzip): {secs:.2} s, {:.1} MB/s",
        mb / secs
    );
    fs::remove_file(&big).unwrap();

    let small_dir = env.root().join("src").join("small");
    fs::create_dir(&small_dir).unwrap();
    let mut total = 0u64;
    let mut rng = Rng::from_state(12345);
    let files: Vec<PathBuf> = (0..10_000u64)
        .map(|i| {
            let len = 1024 + (rng.step() % (7 * 1024 + 1)) as usize;
            let mut data = text(len / 2, i);
            data.extend(noise(len - len / 2, i));
            total += len as u64;
            let p = small_dir.join(format!("f{i:05}"));
            fs::write(&p, &data).unwrap();
            p
        })
        .collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let start = Instant::now();
    lib_api::store(&many, &refs);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "10,000 small files (1-8 KiB, {:.1} MB), gzip, one thread: {secs:.2} s, {:.0} files/s, {:.1} MB/s",
        total as f64 / 1e6,
        files.len() as f64 / secs,
        total as f64 / 1e6 / secs
    );
}
