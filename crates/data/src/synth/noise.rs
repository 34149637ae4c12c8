//! Seeded 2-D gradient noise (Perlin-style, hashed lattice gradients, quintic fade) and its fractal sums.
//! Written here rather than taken from a crate so the synthetic images cannot change with a dependency update.

/// A noise field keyed by a 32-bit seed.
#[derive(Clone, Copy, Debug)]
pub struct Noise {
    seed: u32,
}

const S: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// Eight unit gradients; the hash picks one per lattice point.
const GRADIENTS: [(f32, f32); 8] = [
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, 1.0),
    (0.0, -1.0),
    (S, S),
    (-S, S),
    (S, -S),
    (-S, -S),
];

/// A 32-bit integer hash (multiply–xorshift finaliser) of a lattice point and seed.
#[inline]
fn hash(ix: i32, iy: i32, seed: u32) -> u32 {
    let mut h = (ix as u32).wrapping_mul(0x27d4_eb2d)
        ^ (iy as u32).wrapping_mul(0x1656_67b1)
        ^ seed.wrapping_mul(0x9e37_79b9);
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Uniform value in [0, 1) from a lattice point (used for per-thread and per-cell randomness).
pub fn hash01(ix: i32, iy: i32, seed: u32) -> f32 {
    (hash(ix, iy, seed) >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// `floor` for the coordinate ranges we use (|x| < 2³¹), without a libm call (`floorf` is not inlined on
/// baseline x86-64).
#[inline]
pub fn fast_floor(x: f32) -> f32 {
    floor_i32(x) as f32
}

/// `floor` as an integer, for |x| < 2³¹.
#[inline]
pub fn floor_i32(x: f32) -> i32 {
    let i = x as i32;
    if i as f32 > x { i - 1 } else { i }
}

fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

impl Noise {
    /// A field for `seed`.
    pub fn new(seed: u32) -> Self {
        Self { seed }
    }

    /// Gradient noise at (x, y), roughly in [-1, 1].
    #[inline]
    pub fn at(&self, x: f32, y: f32) -> f32 {
        let (ix, iy) = (floor_i32(x), floor_i32(y));
        let (dx, dy) = (x - ix as f32, y - iy as f32);
        // A cheap lattice hash is enough to pick one of eight gradients (its top three bits).
        let hx0 = (ix as u32).wrapping_mul(0x8da6_b343);
        let hx1 = (ix.wrapping_add(1) as u32).wrapping_mul(0x8da6_b343);
        let hy0 = (iy as u32).wrapping_mul(0xd816_3841) ^ self.seed;
        let hy1 = (iy.wrapping_add(1) as u32).wrapping_mul(0xd816_3841) ^ self.seed;
        let dot = |h: u32, ox: f32, oy: f32| {
            let h = (h ^ (h >> 15)).wrapping_mul(0x2c1b_3c6d);
            let (gx, gy) = GRADIENTS[(h >> 29) as usize];
            gx * ox + gy * oy
        };
        let n00 = dot(hx0 ^ hy0, dx, dy);
        let n10 = dot(hx1 ^ hy0, dx - 1.0, dy);
        let n01 = dot(hx0 ^ hy1, dx, dy - 1.0);
        let n11 = dot(hx1 ^ hy1, dx - 1.0, dy - 1.0);
        let (u, v) = (fade(dx), fade(dy));
        let a = n00 + u * (n10 - n00);
        let b = n01 + u * (n11 - n01);
        // 2-D Perlin noise with unit gradients stays within ±√2/2; rescale to about ±1.
        (a + v * (b - a)) * std::f32::consts::SQRT_2
    }

    /// Fractal sum of `octaves` layers (frequency ×2, amplitude ×`gain` each), normalised to about [-1, 1].
    pub fn fbm(&self, x: f32, y: f32, octaves: u32, gain: f32) -> f32 {
        let (mut sum, mut norm, mut amp, mut freq) = (0.0, 0.0, 1.0, 1.0);
        for o in 0..octaves {
            // Offset each octave so lattice points do not line up.
            let off = o as f32 * 17.31;
            sum += amp * self.at(x * freq + off, y * freq - off);
            norm += amp;
            amp *= gain;
            freq *= 2.0;
        }
        sum / norm
    }

    /// Fractal sum of |noise| (turbulence), in about [0, 1].
    pub fn turbulence(&self, x: f32, y: f32, octaves: u32) -> f32 {
        let (mut sum, mut norm, mut amp, mut freq) = (0.0, 0.0, 1.0, 1.0);
        for o in 0..octaves {
            let off = o as f32 * 11.17;
            sum += amp * self.at(x * freq + off, y * freq + off).abs();
            norm += amp;
            amp *= 0.5;
            freq *= 2.0;
        }
        sum / norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_bounded_and_varied() {
        let n = Noise::new(3);
        let vals: Vec<f32> = (0..4000)
            .map(|i| n.fbm(i as f32 * 0.37, i as f32 * 0.11, 4, 0.5))
            .collect();
        assert!(vals.iter().all(|v| v.abs() <= 1.01));
        let mean = vals.iter().sum::<f32>() / vals.len() as f32;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / vals.len() as f32;
        assert!(mean.abs() < 0.1 && var > 0.01, "mean {mean} var {var}");
        // Lattice points are zero by construction (gradient noise).
        assert_eq!(n.at(3.0, 5.0), 0.0);
    }
}
