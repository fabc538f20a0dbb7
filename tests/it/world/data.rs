//! Deterministic test data: the same seed gives the same bytes on every
//! run. (The crash harness keeps its own SplitMix64, so that the seeds of
//! past soak runs still reproduce their kill delays.)

/// xorshift64 with a xorshift64* output, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator whose state is `state` as it is (not zero).
    pub fn from_state(state: u64) -> Rng {
        Rng(state)
    }

    /// The next raw xorshift64 state (what [`noise`] and [`text`] use).
    pub fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next xorshift64* output.
    pub fn next(&mut self) -> u64 {
        self.step().wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&r.step().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text: numbered lines from a small vocabulary.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "backup",
        "content",
        "repository",
        "snapshot",
        "archive",
        "token",
        "gzip",
        "prune",
    ];
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        let w = WORDS[(r.step() % 8) as usize];
        out.extend_from_slice(format!("{seed} line {line}: the {w} is kept once.\n").as_bytes());
    }
    out.truncate(len);
    out
}
