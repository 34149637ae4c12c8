//! MVFA's few-shot augmentation (`utils.augment` of the official code): every shot, then the
//! whole batch rotated by −π/8, −π/16, +π/16, +π/8, translated by (0.1, 0.1), (−0.1, 0.1),
//! (−0.1, −0.1), (0.1, −0.1), flipped left–right and flipped top–bottom: 11 images per shot, in
//! that order (batch-major, as the official `torch.cat`s leave them).
//!
//! Rotations and translations are `F.affine_grid` (`align_corners=False`) + `F.grid_sample`
//! (bilinear, `padding_mode="reflection"`, `align_corners=False`), with PyTorch's float32
//! arithmetic; the flips are kornia's `hflip`/`vflip` (`flip(-1)`/`flip(-2)`). The sampling
//! positions do not depend on the pixels, so the host computes each output pixel's four source
//! indices and weights once and the device gathers them (`select`): no read-back, which WebGPU
//! could not do synchronously.
use burn::tensor::{Int, Tensor, TensorData};

/// One of the official augmentations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Augmentation {
    /// The shot as it is.
    Identity,
    /// `rot_img(x, θ)`: `affine_grid([[cos θ, −sin θ, 0], [sin θ, cos θ, 0]])`.
    Rotate(f64),
    /// `translation_img(x, a, b)`: `affine_grid([[1, 0, a], [0, 1, b]])` (grid units, ±1 = edges).
    Translate(f32, f32),
    /// kornia `hflip` (reverse the columns).
    FlipHorizontal,
    /// kornia `vflip` (reverse the rows).
    FlipVertical,
}

/// The official order.
pub fn official_augmentations() -> [Augmentation; 11] {
    use std::f64::consts::PI;
    [
        Augmentation::Identity,
        Augmentation::Rotate(-PI / 8.0),
        Augmentation::Rotate(-PI / 16.0),
        Augmentation::Rotate(PI / 16.0),
        Augmentation::Rotate(PI / 8.0),
        Augmentation::Translate(0.1, 0.1),
        Augmentation::Translate(-0.1, 0.1),
        Augmentation::Translate(-0.1, -0.1),
        Augmentation::Translate(0.1, -0.1),
        Augmentation::FlipHorizontal,
        Augmentation::FlipVertical,
    ]
}

/// Per output pixel (row-major `H·W`) the flat source indices and bilinear weights of the four
/// corners (north-west, north-east, south-west, south-east); a corner outside the image has
/// weight 0 (and index 0).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    /// Source indices per corner.
    pub indices: [Vec<i64>; 4],
    /// Weights per corner.
    pub weights: [Vec<f32>; 4],
}

/// `linspace_from_neg_one` of ATen's `affine_grid` with `align_corners=False`, in float32:
/// `linspace(−1, 1, n) · (n − 1) / n`.
fn base_coordinates(n: usize) -> Vec<f32> {
    if n <= 1 {
        return vec![0.0; n];
    }
    let step = 2.0f32 / (n - 1) as f32;
    // ATen's linspace fills the first half from the start and the second half from the end.
    let half = n / 2;
    (0..n)
        .map(|i| if i < half { -1.0 + step * i as f32 } else { 1.0 - step * (n - 1 - i) as f32 })
        .map(|v| v * (n - 1) as f32 / n as f32)
        .collect()
}

/// ATen's `reflect_coordinates(x, −1, 2·size − 1)` then `clip_coordinates` (align_corners=False):
/// reflect about the pixel edges −0.5 and size − 0.5, then clamp to [0, size − 1].
fn reflect(x: f32, size: usize) -> f32 {
    let min = -0.5f32;
    let span = size as f32;
    let v = (x - min).abs();
    let extra = v % span;
    let flips = (v / span).floor() as i64;
    let r = if flips % 2 == 0 { extra + min } else { span - extra + min };
    r.clamp(0.0, (size - 1) as f32)
}

impl SamplingPlan {
    /// The plan of one augmentation for `h × w` images.
    pub fn new(augmentation: Augmentation, h: usize, w: usize) -> Self {
        let n = h * w;
        let mut plan = Self { indices: std::array::from_fn(|_| vec![0; n]), weights: std::array::from_fn(|_| vec![0.0; n]) };
        let theta: Option<[f32; 6]> = match augmentation {
            Augmentation::Rotate(angle) => {
                // torch.tensor(float64 angle): cos/sin in float64, then `.type(FloatTensor)`.
                let (c, s) = (angle.cos() as f32, angle.sin() as f32);
                Some([c, -s, 0.0, s, c, 0.0])
            }
            Augmentation::Translate(a, b) => Some([1.0, 0.0, a, 0.0, 1.0, b]),
            _ => None,
        };
        let Some(t) = theta else {
            for y in 0..h {
                for x in 0..w {
                    let src = match augmentation {
                        Augmentation::FlipHorizontal => y * w + (w - 1 - x),
                        Augmentation::FlipVertical => (h - 1 - y) * w + x,
                        _ => y * w + x,
                    };
                    plan.indices[0][y * w + x] = src as i64;
                    plan.weights[0][y * w + x] = 1.0;
                }
            }
            return plan;
        };
        let (xs, ys) = (base_coordinates(w), base_coordinates(h));
        for (row, &by) in ys.iter().enumerate() {
            for (col, &bx) in xs.iter().enumerate() {
                // `base_grid @ θᵀ`: the grid's x and y in [−1, 1] units.
                let gx = bx * t[0] + by * t[1] + t[2];
                let gy = bx * t[3] + by * t[4] + t[5];
                // grid_sampler_unnormalize (align_corners=False), then reflection padding.
                let ix = reflect(((gx + 1.0) * w as f32 - 1.0) / 2.0, w);
                let iy = reflect(((gy + 1.0) * h as f32 - 1.0) / 2.0, h);
                let (x0, y0) = (ix.floor(), iy.floor());
                let (x1, y1) = (x0 + 1.0, y0 + 1.0);
                let corners = [
                    (x0, y0, (x1 - ix) * (y1 - iy)),
                    (x1, y0, (ix - x0) * (y1 - iy)),
                    (x0, y1, (x1 - ix) * (iy - y0)),
                    (x1, y1, (ix - x0) * (iy - y0)),
                ];
                let out = row * w + col;
                for (k, &(cx, cy, weight)) in corners.iter().enumerate() {
                    if cx >= 0.0 && cy >= 0.0 && (cx as usize) < w && (cy as usize) < h {
                        plan.indices[k][out] = (cy as usize * w + cx as usize) as i64;
                        plan.weights[k][out] = weight;
                    }
                }
            }
        }
        plan
    }

    /// Applies the plan to `x` `[N, C, H, W]` (the plan's `H·W`).
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        assert_eq!(self.indices[0].len(), h * w, "sampling plan for {} pixels applied to {h}×{w} images", self.indices[0].len());
        let device = x.device();
        let flat = x.reshape([n, c, h * w]);
        let mut out: Option<Tensor<3>> = None;
        for (indices, weights) in self.indices.iter().zip(&self.weights) {
            if weights.iter().all(|&v| v == 0.0) {
                continue;
            }
            let index = Tensor::<1, Int>::from_data(TensorData::new(indices.clone(), [h * w]), &device);
            let weight = Tensor::<1>::from_data(TensorData::new(weights.clone(), [h * w]), &device).reshape([1, 1, h * w]);
            let term = flat.clone().select(2, index) * weight;
            out = Some(out.map_or(term.clone(), |o| o + term));
        }
        out.unwrap_or_else(|| Tensor::zeros([n, c, h * w], &device)).reshape([n, c, h, w])
    }
}

/// `augment(fewshot_img)`: the 11 official augmentations of `x` `[K, C, H, W]`, batch-major
/// (`[11·K, C, H, W]`: the K shots, then the K shots rotated by −π/8, …).
pub fn augment(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let parts = official_augmentations().iter().map(|&a| SamplingPlan::new(a, h, w).apply(x.clone())).collect();
    Tensor::cat(parts, 0)
}

/// `augment(fewshot_img, fewshot_mask)` for masks `[K, 1, H, W]`: bilinearly warped as the
/// official code does (re-binarise above 0.5 where a loss needs 0/1 targets).
pub fn augment_masks(masks: Tensor<4>) -> Tensor<4> {
    augment(masks)
}

/// The number of augmented images per shot.
pub const AUGMENTED_PER_SHOT: usize = 11;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_coordinates_are_pixel_centres() {
        let xs = base_coordinates(4);
        let want = [-0.75f32, -0.25, 0.25, 0.75];
        for (g, w) in xs.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{xs:?}");
        }
    }

    #[test]
    fn reflection_folds_about_the_pixel_edges() {
        // size 4: edges at −0.5 and 3.5.
        assert_eq!(reflect(-1.0, 4), 0.0);
        assert!((reflect(3.75, 4) - 3.0).abs() < 1e-6);
        assert!((reflect(-0.25, 4) - 0.0).abs() < 1e-6);
        assert!((reflect(1.25, 4) - 1.25).abs() < 1e-6);
        assert!((reflect(4.0, 4) - 3.0).abs() < 1e-6);
    }

    #[test]
    fn identity_and_flips_are_permutations() {
        let plan = SamplingPlan::new(Augmentation::FlipHorizontal, 2, 3);
        assert_eq!(plan.indices[0], vec![2, 1, 0, 5, 4, 3]);
        let plan = SamplingPlan::new(Augmentation::FlipVertical, 2, 3);
        assert_eq!(plan.indices[0], vec![3, 4, 5, 0, 1, 2]);
        // A zero rotation samples every pixel centre exactly.
        let plan = SamplingPlan::new(Augmentation::Rotate(0.0), 3, 3);
        for out in 0..9 {
            let total: f32 = (0..4).map(|k| plan.weights[k][out]).sum();
            assert!((total - 1.0).abs() < 1e-6);
            let best = (0..4).max_by(|&a, &b| plan.weights[a][out].total_cmp(&plan.weights[b][out])).unwrap();
            assert_eq!(plan.indices[best][out], out as i64);
        }
    }
}
