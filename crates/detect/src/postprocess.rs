//! Post-processing shared by every detector: resizing maps, Gaussian smoothing, harmonic
//! aggregation, top-k pooling.
//!
//! Resizing and smoothing are separable linear maps along each axis. Each is built on the host as a
//! small `[out, in]` matrix ([`AxisMap`]) from the exact PyTorch / scipy / kornia formulas, composed
//! when a method chains them (AA-CLIP: blur on the grid, then upsample), and applied on the device as
//! two matmuls: exact up to float rounding, differentiable (training uses the same path), and free of
//! host read-backs (which the browser's WebGPU forbids).
use burn::tensor::{Device, Tensor, TensorData};

/// A linear map along one axis: `out[i] = Σ_j m[i][j] · in[j]`, stored row-major in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisMap {
    /// Output length.
    pub rows: usize,
    /// Input length.
    pub cols: usize,
    /// `rows × cols` weights.
    pub weights: Vec<f64>,
}

/// Half-sample symmetric reflection (scipy `mode='reflect'`: `d c b a | a b c d | d c b a`).
fn reflect_half_sample(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

/// Whole-sample reflection (PyTorch/kornia `'reflect'`: `d c b | a b c d | c b a`, edge not repeated).
fn reflect_whole_sample(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as usize
}

impl AxisMap {
    /// The identity on `n` samples.
    pub fn identity(n: usize) -> Self {
        let mut weights = vec![0.0; n * n];
        (0..n).for_each(|i| weights[i * n + i] = 1.0);
        Self { rows: n, cols: n, weights }
    }

    /// PyTorch `F.interpolate(mode="bilinear", align_corners=…)` from `n_in` to `n_out` samples.
    /// burn's own `interpolate` defaults to `align_corners = true`; here it is always explicit.
    pub fn bilinear(n_in: usize, n_out: usize, align_corners: bool) -> Self {
        let mut weights = vec![0.0; n_out * n_in];
        for i in 0..n_out {
            let src = if align_corners {
                if n_out > 1 { i as f64 * (n_in as f64 - 1.0) / (n_out as f64 - 1.0) } else { 0.0 }
            } else {
                (n_in as f64 / n_out as f64 * (i as f64 + 0.5) - 0.5).max(0.0)
            };
            let x0 = (src.floor() as usize).min(n_in - 1);
            let x1 = (x0 + 1).min(n_in - 1);
            let lambda = src - x0 as f64;
            weights[i * n_in + x0] += 1.0 - lambda;
            weights[i * n_in + x1] += lambda;
        }
        Self { rows: n_out, cols: n_in, weights }
    }

    /// `scipy.ndimage.gaussian_filter1d(sigma, truncate, mode='reflect')` on `n` samples:
    /// radius `int(truncate·σ + 0.5)`, weights `exp(−x²/2σ²)` normalised to 1.
    pub fn gaussian_scipy(n: usize, sigma: f64, truncate: f64) -> Self {
        let radius = (truncate * sigma + 0.5) as i64;
        let kernel: Vec<f64> = (-radius..=radius).map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp()).collect();
        Self::convolution(n, &kernel, radius, reflect_half_sample)
    }

    /// kornia `gaussian_blur2d((ks, ks), (σ, σ), border_type='reflect')` along one axis: kernel
    /// `exp(−(i − ks//2)²/2σ²)` (shifted by ½ for even sizes), normalised, padding `ks//2` with
    /// PyTorch's `reflect` (edge sample not repeated).
    pub fn gaussian_kornia(n: usize, kernel_size: usize, sigma: f64) -> Self {
        let half = (kernel_size / 2) as f64;
        let even_shift = if kernel_size.is_multiple_of(2) { 0.5 } else { 0.0 };
        let kernel: Vec<f64> = (0..kernel_size)
            .map(|i| {
                let x = i as f64 - half + even_shift;
                (-(x * x) / (2.0 * sigma * sigma)).exp()
            })
            .collect();
        Self::convolution(n, &kernel, (kernel_size / 2) as i64, reflect_whole_sample)
    }

    /// Correlation with `kernel` (normalised here) whose tap `k` reads sample `i + k − offset`,
    /// out-of-range samples folded back by `reflect`.
    fn convolution(n: usize, kernel: &[f64], offset: i64, reflect: fn(i64, i64) -> usize) -> Self {
        let sum: f64 = kernel.iter().sum();
        let mut weights = vec![0.0; n * n];
        for i in 0..n {
            for (k, w) in kernel.iter().enumerate() {
                let j = reflect(i as i64 + k as i64 - offset, n as i64);
                weights[i * n + j] += w / sum;
            }
        }
        Self { rows: n, cols: n, weights }
    }

    /// `self ∘ first`: apply `first`, then `self`.
    pub fn after(&self, first: &AxisMap) -> AxisMap {
        assert_eq!(self.cols, first.rows, "cannot compose [{}×{}] after [{}×{}]", self.rows, self.cols, first.rows, first.cols);
        let mut weights = vec![0.0; self.rows * first.cols];
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.weights[i * self.cols + k];
                if a != 0.0 {
                    for j in 0..first.cols {
                        weights[i * first.cols + j] += a * first.weights[k * first.cols + j];
                    }
                }
            }
        }
        AxisMap { rows: self.rows, cols: first.cols, weights }
    }

    /// The matrix as an f32 device tensor `[rows, cols]`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<2> {
        let values: Vec<f32> = self.weights.iter().map(|&w| w as f32).collect();
        Tensor::from_data(TensorData::new(values, [self.rows, self.cols]), device)
    }

    /// Applies the map on the host to one line (tests and host-side references).
    pub fn apply_host(&self, line: &[f64]) -> Vec<f64> {
        assert_eq!(line.len(), self.cols);
        (0..self.rows).map(|i| (0..self.cols).map(|j| self.weights[i * self.cols + j] * line[j]).sum()).collect()
    }
}

/// Applies `rows` along the height axis and `cols` along the width axis of maps `[N, H, W]`.
pub fn apply_separable(maps: Tensor<3>, rows: &AxisMap, cols: &AxisMap) -> Tensor<3> {
    let [n, h, w] = maps.dims();
    assert_eq!((h, w), (rows.cols, cols.cols), "maps are {h}×{w}, the axis maps expect {}×{}", rows.cols, cols.cols);
    let device = maps.device();
    let (h2, w2) = (rows.rows, cols.rows);
    // Width: [N·H, W] · colsᵀ → [N·H, W2].
    let x = maps.reshape([n * h, w]).matmul(cols.to_tensor(&device).transpose()).reshape([n, h, w2]);
    // Height: bring H last, [N·W2, H] · rowsᵀ → [N·W2, H2].
    let x = x.swap_dims(1, 2).reshape([n * w2, h]).matmul(rows.to_tensor(&device).transpose());
    x.reshape([n, w2, h2]).swap_dims(1, 2)
}

/// The same square map along both axes.
pub fn apply_square(maps: Tensor<3>, map: &AxisMap) -> Tensor<3> {
    apply_separable(maps, map, map)
}

/// Patch scores `[B, L]` on a `g×g` grid (row-major tokens) as maps `[B, g, g]`.
pub fn tokens_to_grid(scores: Tensor<2>, g: usize) -> Tensor<3> {
    let [b, l] = scores.dims();
    assert_eq!(l, g * g, "{l} patch scores do not form a {g}×{g} grid");
    scores.reshape([b, g, g])
}

/// Harmonic aggregation (WinCLIP): each cell gets `N / Σ_{w ∋ cell} 1/s(w)` over the `N` windows
/// that cover it, as anomalib 2.7.0 computes it: a window whose reciprocal is not finite (score 0
/// or NaN) makes exactly the cells it covers non-finite, and non-finite results (and uncovered
/// cells) become 0 (`nan_to_num(posinf=0)`).
/// `membership[w]` lists the cells of window `w`; `scores` is `[B, n_windows]`; returns `[B, cells]`.
pub fn harmonic_aggregation(scores: Tensor<2>, membership: &[Vec<usize>], cells: usize) -> Tensor<2> {
    let [_, windows] = scores.dims();
    assert_eq!(windows, membership.len(), "{windows} window scores for {} windows", membership.len());
    let device = scores.device();
    let mut incidence = vec![0f32; windows * cells];
    let mut counts = vec![0f32; cells];
    for (w, members) in membership.iter().enumerate() {
        for &c in members {
            incidence[w * cells + c] = 1.0;
            counts[c] += 1.0;
        }
    }
    let incidence = Tensor::<2>::from_data(TensorData::new(incidence, [windows, cells]), &device);
    let counts = Tensor::<1>::from_data(TensorData::new(counts, [cells]), &device).unsqueeze::<2>();
    let inverse = scores.recip();
    // Non-finite reciprocals are kept out of the matmul (0·inf would spread NaN to every cell) and
    // counted per cell instead (anomalib masks before summing).
    let poisoned = inverse.clone().is_nan().bool_or(inverse.clone().is_inf());
    let poisoned_cells = poisoned.clone().float().matmul(incidence.clone()).greater_elem(0.0);
    let inverse_sum = inverse.mask_fill(poisoned, 0.0).matmul(incidence);
    let result = counts / inverse_sum;
    let bad = result.clone().is_nan().bool_or(result.clone().is_inf()).bool_or(poisoned_cells);
    result.mask_fill(bad, 0.0)
}

/// Mean of the `k` largest values of each row of `[B, N]` on the host (sorting; the reference for
/// [`top_k_mean_rows`]). `k` is clamped to `1..=N`.
pub fn top_k_mean(values: &[f32], row_len: usize, k: usize) -> Vec<f32> {
    assert!(row_len > 0 && values.len().is_multiple_of(row_len));
    let k = k.clamp(1, row_len);
    values
        .chunks(row_len)
        .map(|row| {
            let mut sorted = row.to_vec();
            sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            (sorted[..k].iter().map(|&v| v as f64).sum::<f64>() / k as f64) as f32
        })
        .collect()
}

/// Device version of [`top_k_mean`] for `[B, N]` → `[B]`, without sorting and without
/// read-backs: burn's GPU top-k unrolls `k` into its kernel, which for Bayes-PFL's k = 2000 takes
/// cubecl's shader compiler tens of minutes (natively and in the browser). Instead the k-th largest
/// value `t` of each row is found by bisection on the value (invariant: at least `k` values ≥ `lo`,
/// fewer than `k` values ≥ `hi`; 64 halvings of `[min, max]` leave `lo` and `hi` adjacent floats,
/// so `lo` is exactly the k-th value), and the mean is `(Σ_{v > t} v + (k − #{v > t}) · t) / k`.
/// `k` is clamped to `1..=N`.
pub fn top_k_mean_rows(values: Tensor<2>, k: usize) -> Tensor<1> {
    let [b, n] = values.dims();
    assert!(n > 0, "top-k mean of empty rows");
    let k = k.clamp(1, n) as f32;
    let count_at_least = |t: &Tensor<2>| values.clone().greater_equal(t.clone().expand([b, n])).float().sum_dim(1);
    let mut hi = values.clone().max_dim(1);
    // Ties at the maximum covering k values: the answer is the maximum itself.
    let mut lo = values.clone().min_dim(1).mask_where(count_at_least(&hi).greater_equal_elem(k), hi.clone());
    for _ in 0..64 {
        let mid = (lo.clone() + hi.clone()).mul_scalar(0.5);
        let enough = count_at_least(&mid).greater_equal_elem(k);
        lo = lo.mask_where(enough.clone(), mid.clone());
        hi = hi.mask_where(enough.bool_not(), mid);
    }
    let above = values.clone().greater(lo.clone().expand([b, n])).float();
    let count = above.clone().sum_dim(1);
    let sum = (values * above).sum_dim(1);
    (sum + count.neg().add_scalar(k) * lo).div_scalar(k).reshape([b])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflections_follow_scipy_and_pytorch() {
        // scipy reflect on 4 samples: index -1 → 0, -2 → 1, 4 → 3, 5 → 2.
        assert_eq!([-2, -1, 4, 5].map(|i| reflect_half_sample(i, 4)), [1, 0, 3, 2]);
        // torch reflect on 4 samples: -1 → 1, -2 → 2, 4 → 2, 5 → 1.
        assert_eq!([-2, -1, 4, 5].map(|i| reflect_whole_sample(i, 4)), [2, 1, 2, 1]);
    }

    #[test]
    fn maps_preserve_constants_and_compose() {
        for m in [
            AxisMap::bilinear(37, 518, true),
            AxisMap::bilinear(15, 240, false),
            AxisMap::gaussian_scipy(64, 4.0, 4.0),
            AxisMap::gaussian_kornia(37, 7, 1.0),
        ] {
            let out = m.apply_host(&vec![2.5; m.cols]);
            assert!(out.iter().all(|v| (v - 2.5).abs() < 1e-12), "{m:?}");
        }
        let blur = AxisMap::gaussian_kornia(37, 7, 1.0);
        let up = AxisMap::bilinear(37, 518, true);
        let both = up.after(&blur);
        let line: Vec<f64> = (0..37).map(|i| (i * i % 11) as f64).collect();
        let a = both.apply_host(&line);
        let b = up.apply_host(&blur.apply_host(&line));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12));
    }

    #[test]
    fn top_k_mean_of_rows() {
        assert_eq!(top_k_mean(&[1., 5., 3., 2., 9., 0., 4., 4.], 4, 2), vec![4.0, 6.5]);
    }
}
