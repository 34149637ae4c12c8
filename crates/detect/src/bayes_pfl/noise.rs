//! Monte-Carlo noise for the prompt flows, as an input.
//!
//! The official code draws ε with `torch.randn_like`, whose stream cannot be reproduced outside
//! PyTorch. The detector therefore takes its ε from a [`McNoise`] source: [`SeededNoise`] for
//! sampling (`--mc-noise sample --seed S`), [`ZeroNoise`] for the distribution means pushed through
//! the flows (`--mc-noise zero`, deterministic), and [`FixedNoise`] to replay recorded draws (the
//! parity tests feed the ε of the Python reference).
use std::collections::VecDeque;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::head::StateKind;

/// A source of standard-normal draws for the flows.
pub trait McNoise: Send {
    /// ε of the image-specific (context) distribution for `samples` samples of `images` images,
    /// `[samples, images, dim]` row-major (sample-major, as the official code stacks them).
    fn context(&mut self, samples: usize, images: usize, dim: usize) -> Vec<f32>;

    /// ε of one image-agnostic distribution, `[samples, dim]` row-major. The detector draws the
    /// normal one, then the abnormal one, once per run.
    fn state(&mut self, kind: StateKind, samples: usize, dim: usize) -> Vec<f32>;
}

/// ε = 0: every sample is the base mean pushed through the flows (deterministic results).
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroNoise;

impl McNoise for ZeroNoise {
    fn context(&mut self, samples: usize, images: usize, dim: usize) -> Vec<f32> {
        vec![0.0; samples * images * dim]
    }

    fn state(&mut self, _kind: StateKind, samples: usize, dim: usize) -> Vec<f32> {
        vec![0.0; samples * dim]
    }
}

/// Standard normals from a seeded ChaCha8 stream (`seed_from_u64`), by the Box–Muller transform
/// on pairs of 53-bit uniforms `u = (word >> 11)·2⁻⁵³`: `r = √(−2 ln(1 − u₁))`, `θ = 2π u₂`,
/// giving `r cos θ` then `r sin θ`. The stream is part of this crate's contract: the same seed gives
/// the same ε on every platform (up to the last bit of `ln`/`cos`), whatever `rand` version.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl SeededNoise {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), spare: None }
    }

    /// The next uniform in [0, 1): `(word >> 11)·2⁻⁵³`.
    pub fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The next standard normal.
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let radius = (-2.0 * (1.0 - self.uniform()).ln()).sqrt();
        let angle = std::f64::consts::TAU * self.uniform();
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }

    fn draw(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }
}

impl McNoise for SeededNoise {
    fn context(&mut self, samples: usize, images: usize, dim: usize) -> Vec<f32> {
        self.draw(samples * images * dim)
    }

    fn state(&mut self, _kind: StateKind, samples: usize, dim: usize) -> Vec<f32> {
        self.draw(samples * dim)
    }
}

/// Replays given draws in order (tests); an exhausted queue yields empty vectors, which the
/// detector reports as an error.
#[derive(Debug, Clone, Default)]
pub struct FixedNoise {
    /// Context draws, one per detection call, each `[samples, images, dim]`.
    pub context: VecDeque<Vec<f32>>,
    /// Normal-state draws `[samples, dim]`.
    pub normal: VecDeque<Vec<f32>>,
    /// Abnormal-state draws `[samples, dim]`.
    pub abnormal: VecDeque<Vec<f32>>,
}

impl McNoise for FixedNoise {
    fn context(&mut self, _samples: usize, _images: usize, _dim: usize) -> Vec<f32> {
        self.context.pop_front().unwrap_or_default()
    }

    fn state(&mut self, kind: StateKind, _samples: usize, _dim: usize) -> Vec<f32> {
        match kind {
            StateKind::Normal => self.normal.pop_front(),
            StateKind::Abnormal => self.abnormal.pop_front(),
        }
        .unwrap_or_default()
    }
}

/// How the detector draws its noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseMode {
    /// Seeded standard normals ([`SeededNoise`]).
    Sample {
        /// Seed of the stream.
        seed: u64,
    },
    /// ε = 0 ([`ZeroNoise`]).
    Zero,
}

impl NoiseMode {
    /// The source for this mode.
    pub fn source(self) -> Box<dyn McNoise> {
        match self {
            Self::Sample { seed } => Box::new(SeededNoise::new(seed)),
            Self::Zero => Box::new(ZeroNoise),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_normals_are_reproducible_and_standard() {
        let a = SeededNoise::new(7).draw(20_000);
        assert_eq!(a, SeededNoise::new(7).draw(20_000));
        assert_ne!(a, SeededNoise::new(8).draw(20_000));
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        // Standard errors: 1/√n ≈ 0.007 for the mean, √(2/n) ≈ 0.01 for the variance.
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, variance {var}");
    }

    #[test]
    fn zero_and_fixed_sources() {
        assert!(ZeroNoise.context(2, 3, 4).iter().all(|&v| v == 0.0));
        let mut fixed = FixedNoise { context: VecDeque::from([vec![1.0; 4]]), ..Default::default() };
        assert_eq!(fixed.context(1, 1, 4), vec![1.0; 4]);
        assert!(fixed.context(1, 1, 4).is_empty());
        assert!(fixed.state(StateKind::Normal, 1, 4).is_empty());
    }
}
