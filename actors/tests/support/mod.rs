//! Seeded randomness for the property tests of this directory (fastrand's generator), so a
//! failure names a seed and a case that reproduce it exactly, without a fuzzing toolchain.
//!
//! `RAFTKV_PROPTEST_CASES=<n>` runs `n` cases per seed instead of each test's default (more
//! for a long soak, fewer for a quick check).

#![allow(dead_code)]

/// A seeded generator with the few draws these tests use.
pub struct Rng(fastrand::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        (0..self.below(max_len + 1)).map(|_| self.0.u8(..)).collect()
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
