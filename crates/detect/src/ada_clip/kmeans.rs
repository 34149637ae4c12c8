//! The k-means of AdaCLIP's HSF as the official code runs it: scikit-learn's
//! `KMeans(n_clusters, n_init="auto")` (k-means++ seeding with `2 + ⌊ln k⌋` local trials, one
//! initialisation, Lloyd iterations, `max_iter = 300`, `tol = 1e-4`), drawing from NumPy's legacy
//! global `RandomState` (MT19937), which the official `test.py`/`train.py` seed with 111 at import
//! (audit D1).
//!
//! No Rust crate reproduces scikit-learn's seeding stream (linfa-clustering draws its own, and needs
//! ndarray in the wasm build), so this is a short exact implementation checked label for label
//! against scikit-learn (`tests/fixtures/ada_clip/kmeans_cases.npz`). Arithmetic is f64 (the
//! official GPU runs hand scikit-learn fp16 data, which it up-casts to f64).

/// NumPy's legacy `RandomState` generator: MT19937 seeded by `init_genrand` (what
/// `np.random.seed(int)` does), doubles from two 32-bit words (`random_sample`).
#[derive(Clone)]
pub struct NumpyRandom {
    state: [u32; 624],
    index: usize,
}

impl std::fmt::Debug for NumpyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NumpyRandom {{ index: {} }}", self.index)
    }
}

impl NumpyRandom {
    /// `np.random.seed(seed)`.
    pub fn seed(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32.wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30)).wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn refill(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    /// The next 32-bit word (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.refill();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random_sample()`: a double in [0, 1) with 53 random bits.
    pub fn random_sample(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

/// scikit-learn's `KMeans` settings as HSF constructs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeans {
    /// `n_clusters` (AdaCLIP's `k_clusters`, 20).
    pub n_clusters: usize,
    /// `max_iter` (300).
    pub max_iter: usize,
    /// `tol` (1e-4), relative to the mean per-feature variance.
    pub tol: f64,
}

impl KMeans {
    /// scikit-learn's defaults with `n_clusters`.
    pub fn new(n_clusters: usize) -> Self {
        Self { n_clusters, max_iter: 300, tol: 1e-4 }
    }

    /// `fit_predict` on `n` rows of `d` values (row-major): the cluster label of every row.
    /// Draws `1 + (k − 1)·(2 + ⌊ln k⌋)` doubles from `rng`, as scikit-learn does.
    pub fn fit_predict(&self, data: &[f32], n: usize, d: usize, rng: &mut NumpyRandom) -> Result<Vec<usize>, String> {
        let k = self.n_clusters;
        if data.len() != n * d {
            return Err(format!("k-means data has {} values, expected {n} × {d}", data.len()));
        }
        if k == 0 || n < k {
            return Err(format!("k-means needs at least n_clusters = {k} ≥ 1 samples, got {n}"));
        }
        let x: Vec<f64> = data.iter().map(|&v| v as f64).collect();
        let tol = self.tol * mean_variance(&x, n, d);
        let mut centers = self.plus_plus(&x, n, d, rng);
        let mut labels = vec![usize::MAX; n];
        let mut strict = false;
        for _ in 0..self.max_iter {
            let old = labels.clone();
            assign(&x, n, d, &centers, &mut labels);
            let new = update(&x, n, d, &centers, &labels, k);
            let shift: f64 = centers.iter().zip(&new).map(|(a, b)| sq_dist(a, b)).sum();
            centers = new;
            if labels == old {
                strict = true;
                break;
            }
            if shift <= tol {
                break;
            }
        }
        if !strict {
            assign(&x, n, d, &centers, &mut labels);
        }
        Ok(labels)
    }

    /// `_kmeans_plusplus` with unit sample weights.
    fn plus_plus(&self, x: &[f64], n: usize, d: usize, rng: &mut NumpyRandom) -> Vec<Vec<f64>> {
        let k = self.n_clusters;
        let row = |i: usize| &x[i * d..(i + 1) * d];
        let trials = 2 + (k as f64).ln() as usize;
        // `random_state.choice(n, p=1/n)`: the cdf of equal weights, searched on the right.
        let u = rng.random_sample();
        let mut cdf = vec![0.0f64; n];
        let mut acc = 0.0;
        for c in cdf.iter_mut() {
            acc += 1.0 / n as f64;
            *c = acc;
        }
        let last = cdf[n - 1];
        cdf.iter_mut().for_each(|c| *c /= last);
        let first = cdf.partition_point(|&c| c <= u).min(n - 1);
        let mut centers = vec![row(first).to_vec()];
        let mut closest: Vec<f64> = (0..n).map(|i| sq_dist(row(first), row(i))).collect();
        let mut potential: f64 = closest.iter().sum();
        for _ in 1..k {
            let cumulative: Vec<f64> = closest
                .iter()
                .scan(0.0, |s, &v| {
                    *s += v;
                    Some(*s)
                })
                .collect();
            let mut best: Option<(f64, usize, Vec<f64>)> = None;
            let candidates: Vec<usize> = (0..trials)
                .map(|_| {
                    let r = rng.random_sample() * potential;
                    // `np.searchsorted(..., side='left')`, clipped to the last index.
                    cumulative.partition_point(|&c| c < r).min(n - 1)
                })
                .collect();
            for &candidate in &candidates {
                let distances: Vec<f64> = (0..n).map(|i| sq_dist(row(candidate), row(i)).min(closest[i])).collect();
                let pot: f64 = distances.iter().sum();
                // `np.argmin`: the first minimum.
                if best.as_ref().is_none_or(|(p, _, _)| pot < *p) {
                    best = Some((pot, candidate, distances));
                }
            }
            let (pot, candidate, distances) = best.expect("at least two trials");
            potential = pot;
            closest = distances;
            centers.push(row(candidate).to_vec());
        }
        centers
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum()
}

fn mean_variance(x: &[f64], n: usize, d: usize) -> f64 {
    let mut total = 0.0;
    for j in 0..d {
        let mean = (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64;
        total += (0..n).map(|i| (x[i * d + j] - mean).powi(2)).sum::<f64>() / n as f64;
    }
    total / d as f64
}

/// The E-step: every row to its nearest centre (the first on ties).
fn assign(x: &[f64], n: usize, d: usize, centers: &[Vec<f64>], labels: &mut [usize]) {
    for i in 0..n {
        let r = &x[i * d..(i + 1) * d];
        let mut best = (f64::INFINITY, 0);
        for (c, center) in centers.iter().enumerate() {
            let dist = sq_dist(r, center);
            if dist < best.0 {
                best = (dist, c);
            }
        }
        labels[i] = best.1;
    }
}

/// The M-step with scikit-learn's relocation of empty clusters: each empty cluster takes the row
/// farthest from its current centre (farthest first), which leaves its old cluster.
fn update(x: &[f64], n: usize, d: usize, old: &[Vec<f64>], labels: &[usize], k: usize) -> Vec<Vec<f64>> {
    let mut sums = vec![vec![0.0f64; d]; k];
    let mut weights = vec![0.0f64; k];
    for i in 0..n {
        let r = &x[i * d..(i + 1) * d];
        weights[labels[i]] += 1.0;
        sums[labels[i]].iter_mut().zip(r).for_each(|(s, v)| *s += v);
    }
    let empty: Vec<usize> = (0..k).filter(|&c| weights[c] == 0.0).collect();
    if !empty.is_empty() {
        let mut far: Vec<(f64, usize)> = (0..n).map(|i| (sq_dist(&x[i * d..(i + 1) * d], &old[labels[i]]), i)).collect();
        far.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (&cluster, &(_, i)) in empty.iter().zip(&far) {
            let r = &x[i * d..(i + 1) * d];
            let from = labels[i];
            sums[from].iter_mut().zip(r).for_each(|(s, v)| *s -= v);
            weights[from] -= 1.0;
            sums[cluster] = r.to_vec();
            weights[cluster] = 1.0;
        }
    }
    sums.into_iter()
        .zip(weights)
        .zip(old)
        .map(|((s, w), o)| if w > 0.0 { s.into_iter().map(|v| v / w).collect() } else { o.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `np.random.seed(111); np.random.random_sample(3)` and `np.random.seed(0)` (NumPy 2.4.6).
    #[test]
    fn matches_numpy_random_state() {
        let mut r = NumpyRandom::seed(0);
        assert_eq!(r.random_sample(), 0.548_813_503_927_324_8);
        let mut r = NumpyRandom::seed(111);
        let got: Vec<f64> = (0..3).map(|_| r.random_sample()).collect();
        assert_eq!(got, [0.612_170_175_617_618_7, 0.169_069_754_345_636_42, 0.436_059_019_371_170_2]);
    }

    #[test]
    fn separates_two_blobs() {
        let data: Vec<f32> = (0..20).flat_map(|i| if i < 10 { [0.0 + i as f32 * 0.01, 0.0] } else { [5.0 + i as f32 * 0.01, 5.0] }).collect();
        let labels = KMeans::new(2).fit_predict(&data, 20, 2, &mut NumpyRandom::seed(1)).unwrap();
        assert!(labels[..10].iter().all(|&l| l == labels[0]) && labels[10..].iter().all(|&l| l == labels[10]) && labels[0] != labels[10]);
        assert!(KMeans::new(3).fit_predict(&data[..4], 2, 2, &mut NumpyRandom::seed(1)).unwrap_err().contains("at least"));
    }
}
