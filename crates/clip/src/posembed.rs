//! Resizing the positional-embedding grid to the patch grid in use (`spec/clip.md` §5).
//!
//! Each rule is a separable linear map, so it is written as an interpolation matrix per axis
//! (`[n_out, n_in]`, computed on the host in f64 from the exact PyTorch formulas) and applied on
//! the device as two matmuls. That keeps it exact, backend-agnostic (no host read-back, which the
//! browser forbids) and differentiable.
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// How a method resizes the checkpoint's positional grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PosEmbedResize {
    /// Rule A: `F.interpolate(mode="bicubic", antialias=True, align_corners=False)`: PIL-style Keys
    /// kernel a = −0.5 with truncated, renormalised taps, also when upsampling (AA-CLIP, Bayes-PFL,
    /// VAND, MVFA; OpenCLIP's `resize_pos_embed`).
    AntialiasBicubic,
    /// Rule B: plain bicubic, a = −0.75, border indices clamped (AdaCLIP).
    Bicubic,
    /// Rule C: bilinear, `align_corners=False` (AnomalyCLIP).
    Bilinear,
}

impl PosEmbedResize {
    /// Parses `antialias-bicubic` (`a`), `bicubic` (`b`) or `bilinear` (`c`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "a" | "antialias-bicubic" | "bicubic-aa" | "antialias" => Some(Self::AntialiasBicubic),
            "b" | "bicubic" => Some(Self::Bicubic),
            "c" | "bilinear" => Some(Self::Bilinear),
            _ => None,
        }
    }
}

/// Keys cubic convolution kernel with parameter `a`.
fn keys_cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The interpolation matrix `[n_out, n_in]` (row-major) of one axis: `out[i] = Σ_j W[i,j]·in[j]`.
pub fn axis_weights(rule: PosEmbedResize, n_in: usize, n_out: usize) -> Vec<f64> {
    assert!(n_in > 0 && n_out > 0, "empty axis");
    let mut w = vec![0.0f64; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for i in 0..n_out {
        let row = &mut w[i * n_in..(i + 1) * n_in];
        match rule {
            PosEmbedResize::AntialiasBicubic => {
                // PyTorch `_compute_indices_weights_aa` (a port of Pillow's resampler).
                let support = 2.0 * scale.max(1.0);
                let inv = 1.0 / scale.max(1.0);
                let center = scale * (i as f64 + 0.5);
                let xmin = ((center - support + 0.5).trunc() as i64).max(0) as usize;
                let xmax = ((center + support + 0.5).trunc() as i64).min(n_in as i64) as usize;
                let mut total = 0.0;
                for (j, slot) in row.iter_mut().enumerate().take(xmax).skip(xmin) {
                    let k = keys_cubic((j as f64 - center + 0.5) * inv, -0.5);
                    *slot = k;
                    total += k;
                }
                if total != 0.0 {
                    row[xmin..xmax].iter_mut().for_each(|v| *v /= total);
                }
            }
            PosEmbedResize::Bicubic => {
                let src = scale * (i as f64 + 0.5) - 0.5;
                let x0 = src.floor();
                let t = src - x0;
                let a = -0.75;
                let coeffs = [keys_cubic(t + 1.0, a), keys_cubic(t, a), keys_cubic(1.0 - t, a), keys_cubic(2.0 - t, a)];
                for (k, c) in coeffs.iter().enumerate() {
                    let idx = (x0 as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
                    row[idx] += c;
                }
            }
            PosEmbedResize::Bilinear => {
                let src = (scale * (i as f64 + 0.5) - 0.5).max(0.0);
                let x0 = src.floor() as usize;
                let x1 = (x0 + 1).min(n_in - 1);
                let lambda = src - x0 as f64;
                row[x0] += 1.0 - lambda;
                row[x1] += lambda;
            }
        }
    }
    w
}

/// Host reference: resizes a `[g_in², d]` row-major patch table to `[g_out², d]`.
pub fn resize_grid_host(table: &[f32], g_in: usize, g_out: usize, d: usize, rule: PosEmbedResize) -> Vec<f32> {
    assert_eq!(table.len(), g_in * g_in * d, "table is not [g_in², d]");
    let w = axis_weights(rule, g_in, g_out);
    // Width pass: [g_in rows, g_out cols, d].
    let mut tmp = vec![0.0f64; g_in * g_out * d];
    for r in 0..g_in {
        for c in 0..g_out {
            let out = &mut tmp[(r * g_out + c) * d..(r * g_out + c + 1) * d];
            for j in 0..g_in {
                let wt = w[c * g_in + j];
                if wt != 0.0 {
                    let src = &table[(r * g_in + j) * d..(r * g_in + j + 1) * d];
                    out.iter_mut().zip(src).for_each(|(o, s)| *o += wt * *s as f64);
                }
            }
        }
    }
    // Height pass.
    let mut result = vec![0.0f32; g_out * g_out * d];
    for r in 0..g_out {
        for c in 0..g_out {
            let out = &mut result[(r * g_out + c) * d..(r * g_out + c + 1) * d];
            let mut acc = vec![0.0f64; d];
            for j in 0..g_in {
                let wt = w[r * g_in + j];
                if wt != 0.0 {
                    let src = &tmp[(j * g_out + c) * d..(j * g_out + c + 1) * d];
                    acc.iter_mut().zip(src).for_each(|(o, s)| *o += wt * s);
                }
            }
            out.iter_mut().zip(&acc).for_each(|(o, a)| *o = *a as f32);
        }
    }
    result
}

/// Device version: resizes the patch rows of a positional table `[1 + g_in², d]` (row 0 is CLS and
/// stays) to `[1 + g_out², d]`.
pub fn resize_positional_embedding(table: Tensor<2>, g_in: usize, g_out: usize, rule: PosEmbedResize) -> Tensor<2> {
    if g_in == g_out {
        return table;
    }
    let [rows, d] = table.dims();
    assert_eq!(rows, 1 + g_in * g_in, "positional table has {rows} rows, expected 1 + {g_in}²");
    let device = table.device();
    let w = axis_matrix(rule, g_in, g_out, &device);
    let cls = table.clone().slice([0..1, 0..d]);
    let grid = table.slice([1..rows, 0..d]);
    // Height pass: rows of the grid.
    let h = w.clone().matmul(grid.reshape([g_in, g_in * d])); // [g_out, g_in*d]
    // Width pass: bring the column axis to the front.
    let h = h.reshape([g_out, g_in, d]).swap_dims(0, 1).reshape([g_in, g_out * d]);
    let hw = w.matmul(h); // [g_out(col), g_out(row)*d]
    let grid = hw.reshape([g_out, g_out, d]).swap_dims(0, 1).reshape([g_out * g_out, d]);
    Tensor::cat(vec![cls, grid], 0)
}

fn axis_matrix(rule: PosEmbedResize, n_in: usize, n_out: usize, device: &Device) -> Tensor<2> {
    let w: Vec<f32> = axis_weights(rule, n_in, n_out).into_iter().map(|v| v as f32).collect();
    Tensor::from_data(TensorData::new(w, [n_out, n_in]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taps(rule: PosEmbedResize, n_in: usize, n_out: usize, i: usize) -> Vec<(usize, f64)> {
        let w = axis_weights(rule, n_in, n_out);
        (0..n_in).filter(|&j| w[i * n_in + j] != 0.0).map(|j| (j, w[i * n_in + j])).collect()
    }

    fn close(got: &[(usize, f64)], want: &[(usize, f64)]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for ((gj, gw), (wj, ww)) in got.iter().zip(want) {
            assert_eq!(gj, wj);
            assert!((gw - ww).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    /// The worked values of `spec/clip.md` §5.1 / §5.2 (24 → 37 and 24 → 17).
    #[test]
    fn spec_worked_values() {
        let a = PosEmbedResize::AntialiasBicubic;
        close(&taps(a, 24, 37, 0), &[(0, 1.068504), (1, -0.068504)]);
        close(&taps(a, 24, 37, 1), &[(0, 0.562502), (1, 0.492814), (2, -0.055315)]);
        close(&taps(a, 24, 37, 2), &[(0, -0.046918), (1, 0.965719), (2, 0.087696), (3, -0.006496)]);
        close(&taps(a, 24, 37, 18), &[(10, -0.0625), (11, 0.5625), (12, 0.5625), (13, -0.0625)]);
        close(&taps(a, 24, 37, 36), &[(22, -0.068504), (23, 1.068504)]);
        close(&taps(a, 24, 17, 0), &[(0, 0.702086), (1, 0.351198), (2, -0.053127), (3, -0.000157)]);
        // Rule B: output 0 reads clamped indices 0,0,0,1 → merged weight on index 0.
        let b = PosEmbedResize::Bicubic;
        close(&taps(b, 24, 37, 0), &[(0, -0.01908 + 0.171273 + 0.937338), (1, -0.08953)]);
        close(&taps(b, 24, 37, 18), &[(10, -0.09375), (11, 0.59375), (12, 0.59375), (13, -0.09375)]);
    }

    #[test]
    fn rows_sum_to_one() {
        for rule in [PosEmbedResize::AntialiasBicubic, PosEmbedResize::Bicubic, PosEmbedResize::Bilinear] {
            for (n_in, n_out) in [(24, 37), (24, 17), (4, 8), (7, 7)] {
                let w = axis_weights(rule, n_in, n_out);
                for i in 0..n_out {
                    let s: f64 = w[i * n_in..(i + 1) * n_in].iter().sum();
                    assert!((s - 1.0).abs() < 1e-12, "{rule:?} {n_in}->{n_out} row {i}: {s}");
                }
            }
        }
    }
}
