//! Seeded randomness for the property tests of this directory: a tiny xorshift generator, so
//! a failure names a seed and a case that reproduce it exactly, without a fuzzing toolchain.
//!
//! `RAFTKV_PROPTEST_CASES=<n>` runs `n` cases per seed instead of each test's default (more
//! for a long soak, fewer for a quick check).

#![allow(dead_code)]

/// xorshift64*: deterministic, dependency-free, good enough to explore input spaces.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's one fixed point.
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        (0..self.below(max_len + 1)).map(|_| self.next() as u8).collect()
    }
}

/// How many cases each seed runs: `RAFTKV_PROPTEST_CASES`, or `default`.
pub fn cases(default: usize) -> usize {
    match std::env::var("RAFTKV_PROPTEST_CASES") {
        Ok(n) => n.trim().parse().unwrap_or_else(|_| panic!("RAFTKV_PROPTEST_CASES={n:?} is not a number")),
        Err(_) => default,
    }
}

/// The fixed seeds every property test runs.
pub const SEEDS: [u64; 4] = [1, 0x9e37_79b9_7f4a_7c15, 0xdead_beef, 20_260_101];
