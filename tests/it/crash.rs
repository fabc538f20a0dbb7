//! Crash safety ("Nothing lost"): the real binary's `bu`, `del`, `prune`,
//! `compress -R`, `compress -A` and `forget` are killed with SIGKILL at many moments
//! spread over their whole run, and after every kill:
//!
//! 1. `check -R` (no repair) exits 0 or 4 and reports nothing but leftover
//!    temp files, orphan content files and orphan packs, all expected
//!    after a kill: no missing or damaged content, no count too low;
//! 2. a normal `bu` succeeds (exit 0) without `unlock`, the dead run's lock
//!    being broken automatically, and `check -R` is as clean as in 1;
//! 3. `check -R --repair` then `check -R` leaves at most orphan content
//!    files (younger than an hour, so kept on purpose), and no orphan pack
//!    (the killed run that wrote it is dead, so repair removes it);
//! 4. every remaining snapshot extracts exactly to the source tree it was
//!    taken of: paths, types, bytes, modes, mtimes (ns), symlink targets.
//!
//! Each operation kind is first run unkilled to measure its duration D;
//! kill point i of N then waits (i/N)·1.2·D plus jitter from a small PRNG
//! seeded per case, so kills land at the start, in the middle, at the end
//! and after the run (counted as completed before the kill). A kill point
//! past D that finds the run still going lets it end and takes its time as
//! the new D: the load of other tests can make every run slower than D was,
//! which would leave the late steps (repacking) never killed. The delays
//! are reproducible from the seed; what the killed run was doing at that
//! moment depends on the machine's speed and load, so a rerun with the same
//! seed kills at the same delays, not always in the same step.
//!
//! `cargo test --test it crash:: -- --nocapture` runs the fast variant; the soak
//! (`scripts/crash-soak.sh`) runs the same code with more points. Settings:
//! - `EPYGIBUS_CRASH_POINTS`: total kill points, rounded up to a multiple of
//!   six (default 126: 21 per operation kind);
//! - `EPYGIBUS_CRASH_SEED`: seed of the kill delays and tree changes
//!   (default 1);
//! - `EPYGIBUS_CRASH_CASES`: independent worlds run in parallel, each with
//!   its share of the kill points (default 2);
//! - `EPYGIBUS_CRASH_KEEP=1`: keep the temp dir of a failing case;
//! - `EPYGIBUS_CRASH_TMPDIR`: where the worlds (repository, snapshots,
//!   source tree) go (default: the system temp dir);
//! - `EPYGIBUS_CRASH_EXTRACT_DIR`: where snapshots are extracted to be
//!   compared (default: `/dev/shm` when writable, else inside the world);
//! - `EPYGIBUS_CRASH_VERBOSE=1`: print every step as it happens;
//! - `EPYGIBUS_CRASH_CONTINUE_ON_EMPTY_LOCK=1`: when the `bu` after a kill
//!   fails only because the killed run left an empty lock file (the
//!   empty-lock bug this harness found and that is fixed: locks are now
//!   written create-only, complete or not at all), record the regression,
//!   `unlock` and go on, so a soak finds what else there is; the test still
//!   fails at the end, listing every such failure.
//!
//! Every invocation sets `EPYGIBUS_CONFIG_DIR`, `EPYGIBUS_DATA_DIR` and
//! `HOME` inside the case's temp dir and uses `--lock-wait 5`.
//!
//! `killed_encrypted_runs_lose_nothing` runs the same harness on an
//! encrypted repository (`new_repo --encrypt`, the key kept on the
//! machine as `new_repo` keeps it): `bu`, `del`, `prune` and `forget` are
//! killed (an encrypted repository has nothing for `compress` to convert);
//! `EPYGIBUS_CRASH_ENCRYPTED_POINTS` sets its kill points (default 40).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

use crate::world::World;
use crate::world::tree::{Kind, Links, Listing, listing_diff, try_listing};
/// No unkilled command may take longer (a hang fails the test).
const TIMEOUT: Duration = Duration::from_secs(120);
/// Snapshots kept between kill points (older ones are deleted unkilled).
const KEEP: usize = 3;
const REPO: &str = "r";
const ARCHIVE: &str = "x";
const SIGKILL: i32 = 9;

/// Set when a case failed, so the others stop early.
static STOP: AtomicBool = AtomicBool::new(false);

// ---------------------------------------------------------------------------
// Settings and randomness
// ---------------------------------------------------------------------------

struct Settings {
    /// Kill points per operation kind, over all cases.
    per_op: usize,
    seed: u64,
    cases: usize,
    keep_failed: bool,
    verbose: bool,
    /// Go on after a regression of the fixed empty-lock bug (see
    /// [`Case::next_backup`]).
    continue_on_empty_lock: bool,
    /// The repository is encrypted; `compress` is not killed.
    encrypted: bool,
}

impl Settings {
    /// The settings of the encrypted variant: the same variables, but its
    /// own number of kill points.
    fn encrypted_from_env() -> Settings {
        let points = std::env::var("EPYGIBUS_CRASH_ENCRYPTED_POINTS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(40);
        Settings {
            // Four of the six kinds are killed.
            per_op: points.div_ceil(4).max(1),
            encrypted: true,
            ..Settings::from_env()
        }
    }

    /// Whether `op` is killed in this variant.
    fn kills(&self, op: Op) -> bool {
        !(self.encrypted && matches!(op, Op::CompressRepo | Op::CompressSnap))
    }

    fn from_env() -> Settings {
        let num = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
                Err(_) => default,
            }
        };
        let points = num("EPYGIBUS_CRASH_POINTS", 126).max(OPS.len() as u64) as usize;
        Settings {
            per_op: points.div_ceil(OPS.len()),
            seed: num("EPYGIBUS_CRASH_SEED", 1),
            cases: num("EPYGIBUS_CRASH_CASES", 2).clamp(1, 64) as usize,
            keep_failed: std::env::var_os("EPYGIBUS_CRASH_KEEP").is_some_and(|v| v != "0"),
            verbose: std::env::var_os("EPYGIBUS_CRASH_VERBOSE").is_some_and(|v| v != "0"),
            continue_on_empty_lock: std::env::var_os("EPYGIBUS_CRASH_CONTINUE_ON_EMPTY_LOCK")
                .is_some_and(|v| v != "0"),
            encrypted: false,
        }
    }

    fn rerun(&self) -> String {
        format!(
            "EPYGIBUS_CRASH_POINTS={} EPYGIBUS_CRASH_SEED={} EPYGIBUS_CRASH_CASES={} cargo test --test it crash:: -- --nocapture",
            self.per_op * OPS.len(),
            self.seed,
            self.cases
        )
    }
}

/// SplitMix64: tiny, deterministic, good enough for delays and test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, case: usize) -> Rng {
        let mut r = Rng(seed ^ (case as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// Compressible bytes: lines of words from a small vocabulary.
    fn text_bytes(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "backup",
            "snapshot",
            "content",
            "index",
            "token",
            "repository",
            "crash",
            "kill",
            "nothing",
            "lost",
            "gzip",
            "blake3",
            "epygibus",
            "archive",
            "prune",
            "check",
        ];
        let mut out = Vec::with_capacity(n + 16);
        let mut line = 0;
        while out.len() < n {
            let w = WORDS[self.below(WORDS.len() as u64) as usize];
            out.extend_from_slice(w.as_bytes());
            line += 1;
            if line % 12 == 0 {
                out.extend_from_slice(format!(" {}\n", self.below(100_000)).as_bytes());
            } else {
                out.push(b' ');
            }
        }
        out.truncate(n);
        out
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Bu,
    Del,
    Prune,
    CompressRepo,
    CompressSnap,
    /// `forget --keep-last 1`: several snapshots removed in one run.
    Forget,
}

const OPS: [Op; 6] = [
    Op::Bu,
    Op::Del,
    Op::Prune,
    Op::CompressRepo,
    Op::CompressSnap,
    Op::Forget,
];

impl Op {
    fn index(self) -> usize {
        OPS.iter().position(|&o| o == self).unwrap()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Op::Bu => "bu",
            Op::Del => "del",
            Op::Prune => "prune",
            Op::CompressRepo => "compress -R",
            Op::CompressSnap => "compress -A",
            Op::Forget => "forget",
        })
    }
}

// ---------------------------------------------------------------------------
// Listings: what a tree holds
// ---------------------------------------------------------------------------

/// What a tree holds (no atimes): paths, types, bytes, modes, owners,
/// mtimes (ns), symlink targets; anything but directories, files and
/// symlinks is an error.
fn manifest(root: &Path) -> Result<Listing, String> {
    let m = try_listing(root, false)?;
    match m
        .iter()
        .find(|(_, item)| matches!(item.kind, Kind::Other(_)))
    {
        Some((rel, _)) => Err(format!(
            "unexpected file type at {}",
            root.join(rel).display()
        )),
        None => Ok(m),
    }
}

/// The differences between two manifests, at most a screenful.
fn diff(want: &Listing, got: &Listing) -> String {
    let mut lines: Vec<String> = listing_diff(want, got, Links::Exact)
        .into_iter()
        .map(|l| format!("  {l}"))
        .collect();
    let total = lines.len();
    lines.truncate(20);
    if total > lines.len() {
        lines.push(format!("  … and {} more", total - lines.len()));
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------
// The source tree and its changes between rounds
// ---------------------------------------------------------------------------

const MIB: usize = 1 << 20;

struct Tree {
    root: PathBuf,
    /// Small files that may be rewritten or deleted.
    small: Vec<PathBuf>,
    /// Directories that may receive new files.
    dirs: Vec<PathBuf>,
    /// The big files (never deleted: symlinks point at one).
    big: Vec<PathBuf>,
    next_name: u64,
}

impl Tree {
    /// ~300 small files in nested directories, three big files of 1-4 MB
    /// (one compressible text, two random) and symlinks.
    fn create(root: &Path, rng: &mut Rng) -> Tree {
        let mut t = Tree {
            root: root.to_owned(),
            small: Vec::new(),
            dirs: Vec::new(),
            big: Vec::new(),
            next_name: 0,
        };
        for a in 0..4 {
            for b in 0..3 {
                for deep in [false, true] {
                    let mut d = PathBuf::from(format!("d{a}")).join(format!("s{b}"));
                    if deep {
                        d.push("deeper");
                    }
                    fs::create_dir_all(root.join(&d)).unwrap();
                    t.dirs.push(d);
                }
            }
        }
        t.dirs.push(PathBuf::new());
        for _ in 0..300 {
            t.add_file(rng);
        }
        fs::create_dir(root.join("big")).unwrap();
        for (name, size) in [
            ("text.log", MIB + rng.below(MIB as u64 / 16) as usize),
            ("noise.bin", MIB + rng.below(MIB as u64) as usize),
            ("blob.img", 2 * MIB + rng.below(2 * MIB as u64) as usize),
        ] {
            let rel = PathBuf::from("big").join(name);
            let bytes = big_bytes(name, size, rng);
            fs::write(root.join(&rel), bytes).unwrap();
            t.big.push(rel);
        }
        symlink("../big/text.log", root.join("d0/to-text")).unwrap();
        symlink("s0", root.join("d1/to-dir")).unwrap();
        symlink("deeper/../../s2", root.join("d2/s1/odd-link")).unwrap();
        fs::set_permissions(root.join("d3/s2"), fs::Permissions::from_mode(0o750)).unwrap();
        t
    }

    fn add_file(&mut self, rng: &mut Rng) {
        let dir = &self.dirs[rng.below(self.dirs.len() as u64) as usize];
        let ext = if rng.chance(35) { "txt" } else { "bin" };
        let rel = dir.join(format!("f{:05}.{ext}", self.next_name));
        self.next_name += 1;
        self.write_small(&rel, None, rng);
        self.small.push(rel);
    }

    /// Writes a small file of a size other than `old_size`, sometimes with
    /// an unusual mode or an old nanosecond mtime.
    fn write_small(&self, rel: &Path, old_size: Option<u64>, rng: &mut Rng) {
        let mut size = if rng.chance(5) {
            0
        } else {
            rng.below(6000) as usize
        };
        if old_size == Some(size as u64) {
            size += 1;
        }
        let bytes = if rel.extension().is_some_and(|e| e == "txt") {
            rng.text_bytes(size)
        } else {
            rng.random_bytes(size)
        };
        let path = self.root.join(rel);
        fs::write(&path, bytes).unwrap();
        match rng.below(20) {
            0 => fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap(),
            1 => fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap(),
            2 => {
                let past = SystemTime::UNIX_EPOCH
                    + Duration::new(
                        1_500_000_000 + rng.below(1 << 27),
                        rng.below(1 << 29) as u32,
                    );
                File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(past)
                    .unwrap();
            }
            _ => {}
        }
    }

    /// Changes the content and size of some files, adds and deletes a few;
    /// with `big`, also rewrites part of one big file (new size too).
    fn mutate(&mut self, rng: &mut Rng, big: bool) {
        for _ in 0..8 {
            let rel = self.small[rng.below(self.small.len() as u64) as usize].clone();
            let old = fs::metadata(self.root.join(&rel)).unwrap().len();
            self.write_small(&rel, Some(old), rng);
        }
        for _ in 0..2 {
            self.add_file(rng);
        }
        for _ in 0..2 {
            let i = rng.below(self.small.len() as u64) as usize;
            let rel = self.small.swap_remove(i);
            fs::remove_file(self.root.join(rel)).unwrap();
        }
        if big {
            let rel = &self.big[rng.below(self.big.len() as u64) as usize];
            let path = self.root.join(rel);
            let name = rel.file_name().unwrap().to_str().unwrap();
            let mut bytes = fs::read(&path).unwrap();
            let change = 1 + rng.below(64 * 1024) as usize;
            let new_len = if bytes.len() + change > 4 * MIB {
                bytes.len() - change
            } else if bytes.len() - change < MIB || rng.chance(50) {
                bytes.len() + change
            } else {
                bytes.len() - change
            };
            bytes.resize(new_len, 0);
            let patch = big_bytes(name, 64 * 1024, rng);
            let at = rng.below((new_len - patch.len()) as u64) as usize;
            bytes[at..at + patch.len()].copy_from_slice(&patch);
            fs::write(&path, bytes).unwrap();
        }
    }
}

fn big_bytes(name: &str, size: usize, rng: &mut Rng) -> Vec<u8> {
    if name.ends_with(".log") {
        rng.text_bytes(size)
    } else {
        rng.random_bytes(size)
    }
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

struct Run {
    label: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "`epygibus {}`: {}\n--- stdout\n{}--- stderr\n{}---",
            self.label, self.status, self.stdout, self.stderr
        )
    }
}

/// One case's [`World`] (config, data, home, backup location and source
/// tree in one temp dir) with a directory for command output files, plus
/// a directory to extract into (on tmpfs when there is one: creating and
/// deleting thousands of files in a row is slow on a churned ext4, and
/// restores write no repository data).
struct CrashWorld {
    world: World,
    root: PathBuf,
    _extract_tmp: TempDir,
    out: PathBuf,
}

impl CrashWorld {
    fn new() -> CrashWorld {
        let builder = || {
            let mut b = tempfile::Builder::new();
            b.prefix("epygibus-crash.");
            b
        };
        let parent = std::env::var_os("EPYGIBUS_CRASH_TMPDIR").map(PathBuf::from);
        let world = World::in_dir(parent.as_deref(), "epygibus-crash.");
        let root = world.root().to_owned();
        fs::create_dir(root.join("logs")).unwrap();
        let extract_tmp = match std::env::var_os("EPYGIBUS_CRASH_EXTRACT_DIR") {
            Some(dir) => builder().tempdir_in(dir).unwrap(),
            None => builder()
                .tempdir_in("/dev/shm")
                .or_else(|_| builder().tempdir_in(&root))
                .unwrap(),
        };
        let out = fs::canonicalize(extract_tmp.path()).unwrap().join("out");
        CrashWorld {
            world,
            root,
            _extract_tmp: extract_tmp,
            out,
        }
    }

    fn src(&self) -> PathBuf {
        self.world.src()
    }

    fn out(&self) -> PathBuf {
        self.out.clone()
    }

    fn command(&self, args: &[String], log: &str) -> Command {
        let mut c = self.world.cmd();
        c.arg("--lock-wait")
            .arg("5")
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(self.root.join(format!("logs/{log}.out"))).unwrap())
            .stderr(File::create(self.root.join(format!("logs/{log}.err"))).unwrap());
        c
    }

    fn spawn(&self, args: &[String], log: &str) -> Child {
        self.command(args, log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.world.bin().display()))
    }

    fn output(&self, args: &[String], log: &str, status: ExitStatus) -> Run {
        let read = |ext: &str| {
            let bytes = fs::read(self.root.join(format!("logs/{log}.{ext}"))).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Run {
            label: args.join(" "),
            status,
            stdout: read("out"),
            stderr: read("err"),
        }
    }

    /// Runs a command to its end (or [`TIMEOUT`], which kills it).
    fn run(&self, args: &[String]) -> Run {
        let mut child = self.spawn(args, "run");
        let began = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if began.elapsed() > TIMEOUT {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.output(args, "run", status)
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// One case: a world, its kill points and what it expects
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct Tally {
    interrupted: u64,
    completed: u64,
}

#[derive(Default)]
struct Stats {
    per_op: [Tally; OPS.len()],
    restores: u64,
    min_restored: Option<usize>,
    max_restored: usize,
    temp_findings: u64,
    orphan_findings: u64,
    /// Kill points of prune and compress -R at which packs were removed or
    /// written (repacking in play when the kill came).
    pack_changes: [u64; OPS.len()],
    durations_ms: [f64; OPS.len()],
    /// Violations recorded to go on (EPYGIBUS_CRASH_CONTINUE_ON_EMPTY_LOCK).
    deferred: Vec<String>,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        for (a, b) in self.per_op.iter_mut().zip(other.per_op) {
            a.interrupted += b.interrupted;
            a.completed += b.completed;
        }
        self.restores += other.restores;
        self.min_restored = match (self.min_restored, other.min_restored) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_restored = self.max_restored.max(other.max_restored);
        self.temp_findings += other.temp_findings;
        self.orphan_findings += other.orphan_findings;
        for (a, b) in self.pack_changes.iter_mut().zip(other.pack_changes) {
            *a += b;
        }
        for (a, b) in self.durations_ms.iter_mut().zip(other.durations_ms) {
            *a = a.max(b);
        }
        self.deferred.extend(other.deferred.iter().cloned());
    }
}

/// A snapshot as `lss` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    stamp: String,
    compressed: bool,
}

/// What a check may report besides notes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// After a kill: leftover temp files and orphan content files.
    TempAndOrphans,
    /// After a repair: orphan content files younger than an hour.
    Orphans,
}

struct Case<'s> {
    id: usize,
    settings: &'s Settings,
    world: CrashWorld,
    rng: Rng,
    tree: Tree,
    /// Snapshot stamp → the manifest of the tree it was taken of.
    expected: BTreeMap<String, Rc<Listing>>,
    /// Recent steps, for failure messages.
    log: VecDeque<String>,
    stats: Stats,
    /// Durations of the unkilled measuring runs, per operation.
    durations: [Duration; OPS.len()],
    /// The next `compress -R` uncompresses.
    uncompress_repo: bool,
    runs: u64,
    began: Instant,
    snapshot_dir: Option<PathBuf>,
}

impl<'s> Case<'s> {
    fn new(id: usize, settings: &'s Settings) -> Case<'s> {
        let world = CrashWorld::new();
        let mut rng = Rng::new(settings.seed, id);
        let tree = Tree::create(&world.src(), &mut rng);
        Case {
            id,
            settings,
            world,
            rng,
            tree,
            expected: BTreeMap::new(),
            log: VecDeque::new(),
            stats: Stats::default(),
            durations: [Duration::ZERO; OPS.len()],
            uncompress_repo: true,
            runs: 0,
            began: Instant::now(),
            snapshot_dir: None,
        }
    }

    fn note(&mut self, line: String) {
        if self.settings.verbose {
            eprintln!(
                "crash case {} +{:.3}s: {line}",
                self.id,
                self.began.elapsed().as_secs_f64()
            );
        }
        if self.log.len() == 40 {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// Fails the test loudly: what went wrong, how to run it again, the
    /// recent steps and (with EPYGIBUS_CRASH_KEEP) where the world is.
    fn fail(&mut self, what: String) -> ! {
        STOP.store(true, Ordering::SeqCst);
        let kept = if self.settings.keep_failed {
            let dir = self.world.world.keep();
            format!("\nkept the world at {dir:?}")
        } else {
            format!(
                "\n(set EPYGIBUS_CRASH_KEEP=1 to keep the world, now {})",
                self.world.root.display()
            )
        };
        let steps: Vec<&str> = self.log.iter().map(String::as_str).collect();
        panic!(
            "crash case {} (seed {}): {what}\nrerun: {}\nrecent steps:\n  {}{kept}",
            self.id,
            self.settings.seed,
            self.settings.rerun(),
            steps.join("\n  ")
        );
    }

    fn run(&mut self, list: &[&str]) -> Run {
        self.runs += 1;
        let began = Instant::now();
        let run = self.world.run(&args(list));
        if self.settings.verbose {
            eprintln!(
                "crash case {}   {:.1} ms `{}` -> {}",
                self.id,
                began.elapsed().as_secs_f64() * 1000.0,
                run.label,
                run.status
            );
        }
        if run.code().is_none() {
            self.fail(format!("hung or crashed (timeout {TIMEOUT:?}):\n{run}"));
        }
        run
    }

    /// Runs a command that must exit 0.
    fn ok(&mut self, list: &[&str]) -> Run {
        let run = self.run(list);
        if run.code() != Some(0) {
            self.fail(format!("unkilled command failed:\n{run}"));
        }
        run
    }

    /// The snapshots as `lss` lists them, oldest first.
    fn lss(&mut self) -> Vec<Listed> {
        let run = self.ok(&["lss", "-A", ARCHIVE]);
        run.stdout
            .lines()
            .map(|l| Listed {
                stamp: l.trim_end_matches("**").to_owned(),
                compressed: l.ends_with("**"),
            })
            .collect()
    }

    /// The snapshots read straight from the snapshot directory (cheaper
    /// than `lss`, which [`Case::restore_all`] runs and compares with this):
    /// a stamp present in both forms is listed once, as compressed.
    fn snapshots(&mut self) -> Vec<Listed> {
        let dir = match &self.snapshot_dir {
            Some(d) => d.clone(),
            None => {
                let spec = self
                    .world
                    .root
                    .join("config/archives")
                    .join(ARCHIVE)
                    .join("spec");
                let text = fs::read_to_string(&spec).unwrap();
                let dir = text
                    .lines()
                    .find_map(|l| l.strip_prefix("snapshot_dir = "))
                    .unwrap_or_else(|| panic!("no snapshot_dir in {}", spec.display()));
                let dir = PathBuf::from(dir);
                self.snapshot_dir = Some(dir.clone());
                dir
            }
        };
        let mut found: BTreeMap<String, bool> = BTreeMap::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name();
            let name = name.to_string_lossy();
            // An encrypted archive's snapshots are sealed: `<name>.age`.
            let name = name.strip_suffix(".age").unwrap_or(&name);
            let (stamp, compressed) = match name.strip_suffix(".gz") {
                Some(stem) => (stem, true),
                None => (name, false),
            };
            let is_stamp = stamp.len() == 19
                && stamp.bytes().enumerate().all(|(i, b)| {
                    if [4, 7, 10, 13, 16].contains(&i) {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            if is_stamp {
                *found.entry(stamp.to_owned()).or_default() |= compressed;
            }
        }
        found
            .into_iter()
            .map(|(stamp, compressed)| Listed { stamp, compressed })
            .collect()
    }

    // ----- setup and measuring --------------------------------------------

    fn setup(&mut self) {
        let loc = format!("--location={}", self.world.root.join("loc").display());
        let src = self.world.src().display().to_string();
        // Odd cases store new content plain: both forms get killed.
        if self.settings.encrypted {
            let (_, public) = crate::world::crypt::new_identity(&self.world.root, "identity.txt");
            self.ok(&["new_repo", "--encrypt", "--recipient", &public, &loc, REPO]);
        } else if self.id % 2 == 1 {
            self.ok(&["new_repo", "-U", &loc, REPO]);
        } else {
            self.ok(&["new_repo", &loc, REPO]);
        }
        self.ok(&["new", "-A", ARCHIVE, "-I", &src, "-R", REPO, &loc]);
        self.backup(&[], "first bu");
        self.tree.mutate(&mut self.rng, true);
        let d = self.backup(&[], "measure bu");
        self.durations[Op::Bu.index()] = d;
        self.tree.mutate(&mut self.rng, false);
        self.backup(&["-U"], "third bu");
        let d = self.timed(&["del", "-A", ARCHIVE, "--back=-1"]);
        self.durations[Op::Del.index()] = d;
        self.forget_deleted();
        let d = self.timed(&["prune", "-R", REPO]);
        self.durations[Op::Prune.index()] = d;
        if self.settings.encrypted {
            self.measure_forget();
            return;
        }
        let a = self.timed(&["compress", "-U", "-R", REPO]);
        let b = self.timed(&["compress", "-R", REPO]);
        self.durations[Op::CompressRepo.index()] = a.max(b);
        // Short enough for a load spike to matter: the better of two.
        let mut best = Duration::MAX;
        for _ in 0..2 {
            let a = self.timed(&["compress", "-A", ARCHIVE, "--back", "0"]);
            let b = self.timed(&["compress", "-U", "-A", ARCHIVE, "--back", "0"]);
            best = best.min(a.max(b));
        }
        self.durations[Op::CompressSnap.index()] = best;
        self.measure_forget();
    }

    /// The end of the setup: measures `forget`, then checks and restores
    /// everything once before any kill.
    fn measure_forget(&mut self) {
        self.tree.mutate(&mut self.rng, false);
        self.backup(&[], "bu before measuring forget");
        let d = self.timed(&["forget", "-A", ARCHIVE, "--keep-last", "1"]);
        self.durations[Op::Forget.index()] = d;
        self.forget_deleted();
        for (ms, d) in self.stats.durations_ms.iter_mut().zip(self.durations) {
            *ms = d.as_secs_f64() * 1000.0;
        }
        let clean = self.check("setup", Allowed::Orphans);
        if clean.1 != 0 {
            self.fail("orphans before any kill".into());
        }
        self.restore_all("setup");
    }

    fn timed(&mut self, list: &[&str]) -> Duration {
        let began = Instant::now();
        let run = self.ok(list);
        let d = began.elapsed();
        self.note(format!("measured `{}`: {d:?}", run.label));
        d
    }

    /// An unkilled backup of the tree as it is; returns its duration.
    fn backup(&mut self, extra: &[&str], why: &str) -> Duration {
        self.backup_after(extra, why, None)
    }

    /// The unkilled backup after kill point `label`: it must succeed
    /// without `unlock`.
    ///
    /// Known bug: a run killed between creating the lock file (O_EXCL) and
    /// writing its holder into it leaves an empty `lock`, which no later
    /// run breaks: they wait, then fail with "lock file … is unreadable or
    /// corrupt" until someone runs `unlock`. That fails the test; with
    /// EPYGIBUS_CRASH_CONTINUE_ON_EMPTY_LOCK it is recorded, the lock
    /// removed with `unlock` and the backup run again.
    fn next_backup(&mut self, extra: &[&str], label: &str) -> Duration {
        self.backup_after(extra, "next bu", Some(label))
    }

    fn backup_after(&mut self, extra: &[&str], why: &str, after: Option<&str>) -> Duration {
        let manifest = Rc::new(self.manifest_of_source());
        let before = self.snapshots();
        let mut list = vec!["bu", "-A", ARCHIVE];
        list.extend_from_slice(extra);
        let began = Instant::now();
        let mut run = self.run(&list);
        if run.code() != Some(0) {
            let lock = self.repo_dir().join("lock");
            let empty_lock = fs::metadata(&lock).is_ok_and(|m| m.len() == 0)
                && run.stderr.contains("is unreadable or corrupt");
            let Some(label) = after.filter(|_| empty_lock) else {
                self.fail(format!("unkilled command failed:\n{run}"));
            };
            let what = format!(
                "the bu after {label} failed on the empty lock file {} that the killed run left:\n{run}",
                lock.display()
            );
            if !self.settings.continue_on_empty_lock {
                self.fail(what);
            }
            self.note(format!("regression of the fixed empty-lock bug: {what}"));
            self.stats
                .deferred
                .push(format!("case {}: {what}", self.id));
            self.ok(&["unlock", "-R", REPO]);
            run = self.ok(&list);
        }
        let d = began.elapsed();
        let after = self.snapshots();
        let new = self.transition(&before, &after, Op::Bu, true, &run.label);
        for stamp in new {
            self.expected.insert(stamp, Rc::clone(&manifest));
        }
        self.note(format!("{why}: `{}` in {d:?}", run.label));
        d
    }

    /// The repository directory, from its spec (`path = …`).
    /// Names of the finished packs (temp files not included).
    fn pack_files(&self) -> BTreeSet<String> {
        crate::world::packs::packs(&self.repo_dir())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn repo_dir(&self) -> PathBuf {
        let spec = self.world.root.join("config/repos").join(REPO);
        let text = fs::read_to_string(&spec).unwrap();
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("path = "))
            .unwrap_or_else(|| panic!("no path in {}", spec.display()));
        PathBuf::from(path)
    }

    fn manifest_of_source(&mut self) -> Listing {
        match manifest(&self.world.src()) {
            Ok(m) => m,
            Err(e) => self.fail(format!("cannot read the source tree: {e}")),
        }
    }

    /// Drops expectations of snapshots no longer listed.
    fn forget_deleted(&mut self) {
        let listed: BTreeSet<String> = self.snapshots().into_iter().map(|l| l.stamp).collect();
        self.expected.retain(|stamp, _| listed.contains(stamp));
    }

    // ----- the kill points --------------------------------------------------

    /// Kill point `i` of `n` for `op`.
    fn kill_point(&mut self, op: Op, i: usize, n: usize) {
        if op == Op::Forget && self.snapshots().len() < 3 {
            // Something to forget: at least two snapshots go.
            self.tree.mutate(&mut self.rng, false);
            self.backup(&[], "bu before a forget kill point");
        }
        let before = self.snapshots();
        let mut manifest = None;
        let list: Vec<String> = match op {
            Op::Bu => {
                self.tree.mutate(&mut self.rng, true);
                manifest = Some(Rc::new(self.manifest_of_source()));
                let mut l = args(&["bu", "-A", ARCHIVE]);
                if self.rng.chance(30) {
                    l.push("-U".into());
                }
                l
            }
            Op::Del => {
                let mut l = args(&["del", "-A", ARCHIVE, "--back=-1"]);
                if before.len() <= 1 {
                    l.push("--remove-last-ok".into());
                }
                l
            }
            Op::Prune => args(&["prune", "-R", REPO]),
            Op::CompressRepo => {
                let mut l = args(&["compress", "-R", REPO]);
                if self.uncompress_repo {
                    l.insert(1, "-U".into());
                }
                self.uncompress_repo = !self.uncompress_repo;
                l
            }
            Op::CompressSnap => {
                // The other form than the newest has, so there is work.
                let mut l = args(&["compress", "-A", ARCHIVE, "--back", "0"]);
                if before.last().is_some_and(|s| s.compressed) {
                    l.insert(1, "-U".into());
                }
                l
            }
            Op::Forget => args(&["forget", "-A", ARCHIVE, "--keep-last", "1"]),
        };
        let d = self.durations[op.index()].as_secs_f64();
        let step = 1.2 * d / n as f64;
        let jitter = (self.rng.unit() - 0.5) * step;
        let delay = Duration::from_secs_f64((i as f64 * step + jitter).max(0.0));
        let label = format!(
            "{op} kill point {i}/{n}: `epygibus {}` killed after {:.2} ms (D = {:.2} ms)",
            list.join(" "),
            delay.as_secs_f64() * 1000.0,
            d * 1000.0
        );

        let packs_before = self.pack_files();
        let mut child = self.world.spawn(&list, "killed");
        let began = Instant::now();
        // Watched until the kill time, so a run that ends first shows how
        // long the operation takes now (a loaded machine stretches it):
        // later kill points spread over that.
        let mut ended_after = ended_within(&mut child, began, delay);
        let mut alive = ended_after.is_none() && child.try_wait().unwrap().is_none();
        // A kill point past D that finds the run still going means the
        // machine is slower now than when D was measured (the other tests'
        // load): the run is left to end and D is measured again, or every
        // later kill of this kind would land in its first steps only.
        if alive && delay.as_secs_f64() > d {
            const HANG: Duration = Duration::from_secs(120);
            let Some(took) = ended_within(&mut child, began, HANG) else {
                let _ = child.kill();
                self.fail(format!("{label}: still running after {HANG:?}"));
            };
            self.note(format!("{label}: still running, left to end: {took:?}"));
            ended_after = Some(took);
            alive = false;
        }
        if alive {
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        let interrupted = alive && status.signal() == Some(SIGKILL);
        if let Some(took) = ended_after.filter(|t| *t > self.durations[op.index()]) {
            self.durations[op.index()] = took;
        }
        if self.pack_files() != packs_before {
            self.stats.pack_changes[op.index()] += 1;
        }
        let tally = &mut self.stats.per_op[op.index()];
        if interrupted {
            tally.interrupted += 1;
        } else {
            tally.completed += 1;
        }
        let outcome = if interrupted {
            "interrupted".to_owned()
        } else {
            format!("completed before the kill ({status})")
        };
        self.note(format!("{label}: {outcome}"));
        if !interrupted && status.code() != Some(0) {
            let run = self.world.output(&list, "killed", status);
            self.fail(format!(
                "{label}: the run was not killed but failed:\n{run}"
            ));
        }

        // The snapshots may change only as the operation says.
        let after = self.snapshots();
        let new = self.transition(&before, &after, op, !interrupted, &label);
        if let Some(m) = manifest {
            for stamp in new {
                self.expected.insert(stamp, Rc::clone(&m));
            }
        }
        self.expected
            .retain(|stamp, _| after.iter().any(|l| &l.stamp == stamp));

        // 1: nothing lost, whatever the moment of the kill.
        self.check(&format!("after {label}"), Allowed::TempAndOrphans);

        // 2: the next run works without `unlock`.
        self.tree.mutate(&mut self.rng, false);
        let extra: &[&str] = if self.rng.chance(50) { &["-U"] } else { &[] };
        self.next_backup(extra, &label);
        self.check(
            &format!("after the bu following {label}"),
            Allowed::TempAndOrphans,
        );

        // Keep the number of snapshots to restore small.
        if self.snapshots().len() > KEEP {
            let keep = KEEP.to_string();
            self.ok(&["del", "-A", ARCHIVE, "--all-but-newest", &keep]);
            self.forget_deleted();
        }

        // 3: repair leaves only young orphans.
        let run = self.run(&["check", "-R", REPO, "--repair"]);
        if !matches!(run.code(), Some(0 | 4)) {
            self.fail(format!("check --repair after {label} failed:\n{run}"));
        }
        self.judge(
            &run,
            &format!("check --repair after {label}"),
            Allowed::TempAndOrphans,
        );
        self.check(&format!("after repair following {label}"), Allowed::Orphans);

        // 4: every snapshot restores exactly.
        let n = self.restore_all(&label);
        self.stats.min_restored = Some(self.stats.min_restored.map_or(n, |m| m.min(n)));
        self.stats.max_restored = self.stats.max_restored.max(n);
    }

    /// Checks the change of the snapshot list over `op`; returns the new
    /// stamps. `finished`: the run completed, so its change must be there.
    fn transition(
        &mut self,
        before: &[Listed],
        after: &[Listed],
        op: Op,
        finished: bool,
        label: &str,
    ) -> Vec<String> {
        let b: BTreeSet<&str> = before.iter().map(|l| l.stamp.as_str()).collect();
        let a: BTreeSet<&str> = after.iter().map(|l| l.stamp.as_str()).collect();
        let added: Vec<String> = a.difference(&b).map(|s| s.to_string()).collect();
        let removed: Vec<String> = b.difference(&a).map(|s| s.to_string()).collect();
        let oldest = before.first().map(|l| l.stamp.clone());
        let ok = match op {
            Op::Bu => removed.is_empty() && added.len() <= 1 && (!finished || added.len() == 1),
            Op::Del => {
                added.is_empty()
                    && removed.len() <= 1
                    && removed.iter().all(|r| Some(r) == oldest.as_ref())
                    && (!finished || removed.len() == 1)
            }
            Op::Forget => {
                let newest = before.last().map(|l| l.stamp.clone());
                added.is_empty()
                    && removed.iter().all(|r| Some(r) != newest.as_ref())
                    && (!finished || removed.len() + 1 == before.len())
            }
            Op::CompressSnap if finished => {
                added.is_empty()
                    && removed.is_empty()
                    && before.last().map(|l| !l.compressed) == after.last().map(|l| l.compressed)
            }
            _ => added.is_empty() && removed.is_empty(),
        };
        if !ok {
            self.fail(format!(
                "{label}: snapshots changed wrongly\n  before {before:?}\n  after  {after:?}"
            ));
        }
        for stamp in &added {
            if self.expected.contains_key(stamp) {
                self.fail(format!("{label}: snapshot {stamp} appeared twice"));
            }
        }
        added
    }

    /// Runs `check -R`; returns (temp files, orphans) reported.
    fn check(&mut self, when: &str, allowed: Allowed) -> (u64, u64) {
        let run = self.run(&["check", "-R", REPO]);
        let label = format!("check {when}");
        let found = self.judge(&run, &label, allowed);
        let problems = found.0 + found.1;
        let code_ok = match run.code() {
            Some(0) => problems == 0,
            Some(4) => problems > 0,
            _ => false,
        };
        if !code_ok {
            self.fail(format!("{label}: wrong exit status:\n{run}"));
        }
        self.stats.temp_findings += found.0;
        self.stats.orphan_findings += found.1;
        found
    }

    /// Classifies a check's output; fails on anything not allowed.
    fn judge(&mut self, run: &Run, label: &str, allowed: Allowed) -> (u64, u64) {
        let (mut temps, mut orphans) = (0, 0);
        let mut bad = Vec::new();
        for line in run.stdout.lines() {
            if let Some(p) = line.strip_prefix("problem: ") {
                if p.starts_with("content file not in the index: ") {
                    orphans += 1;
                } else if p.starts_with("pack not in the index: ")
                    && allowed == Allowed::TempAndOrphans
                {
                    // A pack finished by the killed run before it saved
                    // the index; repair removes it (its writer is dead).
                    orphans += 1;
                } else if p.starts_with("temp file left over: ")
                    && allowed == Allowed::TempAndOrphans
                {
                    temps += 1;
                } else {
                    bad.push(line);
                }
            } else if !(line.starts_with("note: ")
                || line.starts_with("repaired: ")
                || line.starts_with("Checked "))
            {
                bad.push(line);
            }
        }
        if !bad.is_empty() || run.stderr.contains("panicked") {
            let bad = bad.join("\n  ");
            self.fail(format!("{label}: violation:\n  {bad}\nfull output:\n{run}"));
        }
        (temps, orphans)
    }

    /// Extracts every listed snapshot and compares it with its manifest;
    /// returns how many there were.
    fn restore_all(&mut self, label: &str) -> usize {
        let listed = self.lss();
        let direct = self.snapshots();
        if listed != direct {
            self.fail(format!(
                "after {label}: lss lists {listed:?} but the snapshot directory holds {direct:?}"
            ));
        }
        let src = self.world.src().display().to_string();
        let out = self.world.out();
        for (k, snap) in listed.iter().enumerate() {
            let Some(want) = self.expected.get(&snap.stamp).cloned() else {
                self.fail(format!(
                    "after {label}: snapshot {} has no known source tree",
                    snap.stamp
                ));
            };
            if out.exists() {
                fs::remove_dir_all(&out).unwrap();
            }
            fs::create_dir(&out).unwrap();
            let back = format!("--back=-{}", k + 1);
            let into = out.display().to_string();
            let run = self.run(&[
                "extract",
                "-A",
                ARCHIVE,
                &back,
                "--dir",
                &src,
                "--into_dir",
                &into,
            ]);
            if run.code() != Some(0) {
                self.fail(format!(
                    "after {label}: snapshot {} does not extract:\n{run}",
                    snap.stamp
                ));
            }
            let got = match manifest(&out.join("src")) {
                Ok(m) => m,
                Err(e) => self.fail(format!(
                    "after {label}: extracted snapshot {} unreadable: {e}",
                    snap.stamp
                )),
            };
            let d = diff(&want, &got);
            if !d.is_empty() {
                self.fail(format!(
                    "after {label}: snapshot {} ({}) does not restore exactly:\n{d}",
                    snap.stamp,
                    if snap.compressed { "gzip" } else { "plain" }
                ));
            }
            self.stats.restores += 1;
        }
        fs::remove_dir_all(&out).ok();
        listed.len()
    }
}

/// Polls `child` until `until` after `began`: how long it ran, if it ended
/// by then.
fn ended_within(child: &mut Child, began: Instant, until: Duration) -> Option<Duration> {
    while began.elapsed() < until {
        if child.try_wait().unwrap().is_some() {
            return Some(began.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Runs one case over its share of the kill grid; the rounds alternate the
/// operations bu, del, prune, compress -R, compress -A, forget.
fn run_case(id: usize, settings: &Settings) -> Stats {
    let mut case = Case::new(id, settings);
    case.setup();
    let n = settings.per_op;
    let mut plans: Vec<Vec<usize>> = Vec::new();
    for _ in OPS {
        let mut mine: Vec<usize> = (id..n).step_by(settings.cases).collect();
        case.rng.shuffle(&mut mine);
        // The latest kill point first: past D, it measures D again if the
        // load of the tests running beside this one made the runs slower.
        let latest = mine.iter().max().copied();
        if let Some(at) = mine.iter().position(|&i| Some(i) == latest) {
            mine.swap(0, at);
        }
        plans.push(mine);
    }
    let rounds = plans.iter().map(Vec::len).max().unwrap_or(0);
    let mine: usize = OPS
        .iter()
        .zip(&plans)
        .filter(|(op, _)| settings.kills(**op))
        .map(|(_, p)| p.len())
        .sum();
    let mut done = 0;
    'rounds: for round in 0..rounds {
        for (op, plan) in OPS.iter().zip(&plans) {
            if STOP.load(Ordering::SeqCst) {
                break 'rounds;
            }
            if !settings.kills(*op) {
                continue;
            }
            if let Some(&i) = plan.get(round) {
                case.kill_point(*op, i, n);
                done += 1;
                if done % 100 == 0 {
                    eprintln!(
                        "crash case {id}: {done}/{mine} kill points done ({:.0} s)",
                        case.began.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    case.note(format!("case done after {} commands", case.runs));
    case.stats
}

#[test]
fn killed_runs_lose_nothing() {
    run_harness(Settings::from_env());
}

#[test]
fn killed_encrypted_runs_lose_nothing() {
    run_harness(Settings::encrypted_from_env());
}

fn run_harness(settings: Settings) {
    // One harness at a time: the kill points are spread over durations
    // measured at the start, which a second harness's load would stretch.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let began = Instant::now();
    let results: Vec<std::thread::Result<Stats>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..settings.cases)
            .map(|id| {
                let settings = &settings;
                std::thread::Builder::new()
                    .name(format!("crash-case-{id}"))
                    .spawn_scoped(scope, move || run_case(id, settings))
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(stats) => total.add(&stats),
            Err(payload) => failures.push(
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a case panicked".into()),
            ),
        }
    }
    let (mut interrupted, mut completed) = (0, 0);
    let mut kinds = Vec::new();
    for (op, t) in OPS.iter().zip(total.per_op) {
        interrupted += t.interrupted;
        completed += t.completed;
        kinds.push(format!(
            "{op} {}/{}",
            t.interrupted,
            t.interrupted + t.completed
        ));
    }
    let durations: Vec<String> = OPS
        .iter()
        .zip(total.durations_ms)
        .map(|(op, ms)| format!("{op} {ms:.0} ms"))
        .collect();
    let restored = match total.min_restored {
        Some(min) if min != total.max_restored => format!("{min}-{}", total.max_restored),
        _ => total.max_restored.to_string(),
    };
    if settings.encrypted {
        eprintln!("crash: encrypted repository (compress is not killed)");
    }
    eprintln!(
        "crash: measured D (max over cases): {}",
        durations.join(", ")
    );
    eprintln!(
        "crash: interrupted/killed per operation: {}; check saw {} leftover temp files, {} orphan content files",
        kinds.join(", "),
        total.temp_findings,
        total.orphan_findings
    );
    eprintln!(
        "crash: kill points during which packs were written or removed: prune {}, compress -R {}, bu {}, del {}",
        total.pack_changes[Op::Prune.index()],
        total.pack_changes[Op::CompressRepo.index()],
        total.pack_changes[Op::Bu.index()],
        total.pack_changes[Op::Del.index()],
    );
    // Encrypted, nothing but bu, del and prune writes or removes packs.
    let packs_in_play = if settings.encrypted {
        [Op::Bu, Op::Del, Op::Prune]
            .iter()
            .any(|op| total.pack_changes[op.index()] > 0)
    } else {
        total.pack_changes[Op::Prune.index()] > 0
            && total.pack_changes[Op::CompressRepo.index()] > 0
    };
    assert!(
        packs_in_play,
        "no kill point of prune or compress -R had packs in play: the harness lost its coverage of repacking"
    );
    let known = if total.deferred.is_empty() {
        String::new()
    } else {
        format!(
            "; {} FAILED on a regression of the fixed empty-lock bug",
            total.deferred.len()
        )
    };
    eprintln!(
        "crash: {} kill points, {interrupted} interrupted, {completed} completed; {restored} snapshots restored exact each round{known} ({} restores; seed {}, {} cases, {:.1} s)",
        interrupted + completed,
        total.restores,
        settings.seed,
        settings.cases,
        began.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        panic!(
            "(the summary above is partial: a case failed and the others stopped)\n{}",
            failures.join("\n\n")
        );
    }
    if !total.deferred.is_empty() {
        panic!(
            "{} violation(s) recorded with EPYGIBUS_CRASH_CONTINUE_ON_EMPTY_LOCK:\n\n{}",
            total.deferred.len(),
            total.deferred.join("\n\n")
        );
    }
    assert!(
        interrupted > 0,
        "no kill interrupted a run: the delays are wrong"
    );
}
