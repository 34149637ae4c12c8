//! Seeded random numbers with a stream that does not depend on the `rand` crate's version.
//!
//! The generator is ChaCha8 (`rand_chacha`), whose output stream is fixed by its specification. Uniform
//! floats, ranges and shuffles are derived here from raw `u64` words with documented formulas instead of
//! `rand::Rng`, because `rand` has changed those algorithms between major versions. Independent streams for
//! classes or images are derived with [`SeededRng::derive`], so the draws for one class or one image do not
//! depend on how many others there are or in which order (or thread) they are processed.
//!
//! None of this reproduces Python's `random`, NumPy's or torch's streams: the k-shot sets and augmentation
//! parameters are *distributed* as in the papers, not bit-identical to a Python run.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A ChaCha8 generator with helper draws whose formulas are part of this crate's contract.
#[derive(Clone, Debug)]
pub struct SeededRng {
    inner: ChaCha8Rng,
}

/// FNV-1a over bytes: a tiny, stable hash used only to turn labels into stream ids.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl SeededRng {
    /// A generator for `seed` (ChaCha8 `seed_from_u64`, stream 0).
    pub fn new(seed: u64) -> Self {
        Self {
            inner: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// An independent generator for `(seed, label)`: same key, then the stream selected by the FNV-1a hash of
    /// `label`. Use a label such as `"kshot/bottle"` or `"synth/wood/test/3"`.
    pub fn derive(seed: u64, label: &str) -> Self {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(fnv1a64(label.as_bytes()));
        Self { inner }
    }

    /// The next raw 64-bit word.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in [0, 1): the top 53 bits of one word times 2⁻⁵³.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi): `lo + (hi - lo)·uniform()`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform in [lo, hi) as f32.
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        self.range_f64(f64::from(lo), f64::from(hi)) as f32
    }

    /// Uniform integer in [0, n) by rejection (no modulo bias); `n` must be > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SeededRng::below(0)");
        // Largest multiple of n that fits: accept words below it, reduce by modulo.
        let zone = u64::MAX - (u64::MAX % n + 1) % n;
        loop {
            let x = self.next_u64();
            if x <= zone {
                return x % n;
            }
        }
    }

    /// Uniform index in [0, n).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "SeededRng::range_i64: empty range");
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// True with probability `p` (`uniform() < p`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// A standard normal draw (Box–Muller on two uniforms; the second value is discarded for simplicity).
    pub fn normal(&mut self) -> f64 {
        // 1 - u keeps the logarithm's argument in (0, 1].
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle, from the last position down: swap `i` with `index(i + 1)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// `count` distinct indices from [0, n) in draw order (a partial Fisher–Yates shuffle).
    pub fn choose_distinct(&mut self, n: usize, count: usize) -> Vec<usize> {
        assert!(count <= n, "choose_distinct: count > n");
        let mut pool: Vec<usize> = (0..n).collect();
        for i in 0..count {
            let j = i + self.index(n - i);
            pool.swap(i, j);
        }
        pool.truncate(count);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let words = |label: &str| {
            let mut r = SeededRng::derive(7, label);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(words("x"), words("x"));
        assert_ne!(words("x"), words("y"));
    }

    #[test]
    fn chacha8_stream_is_pinned() {
        // Guards against a dependency change altering the stream (and with it every k-shot set).
        let mut r = SeededRng::new(0);
        let first = r.next_u64();
        let mut again = SeededRng::new(0);
        assert_eq!(first, again.next_u64());
        assert_eq!(first, PINNED_FIRST_WORD_SEED0);
    }

    // Recorded from rand_chacha 0.9.0 (ChaCha8Rng::seed_from_u64(0).next_u64()).
    const PINNED_FIRST_WORD_SEED0: u64 = 13_080_132_717_333_068_652;

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = SeededRng::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let v = r.below(5) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn choose_distinct_has_no_repeats() {
        let mut r = SeededRng::new(3);
        let mut v = r.choose_distinct(10, 10);
        v.sort_unstable();
        assert_eq!(v, (0..10).collect::<Vec<_>>());
    }
}
