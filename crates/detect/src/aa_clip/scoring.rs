//! From features and anchors to maps and scores (`spec/aa-clip.md` §6): the fixed logit scale
//! 100, the training probabilities (upsample, then softmax), the test maps (blur on the patch
//! grid, then upsample with `align_corners = true`), the image score and its calibration.
use burn::tensor::activation::softmax;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::Domain;
use crate::postprocess::{AxisMap, apply_square};

/// The fixed logit scale of the official code (CLIP's learned `logit_scale` is not used).
pub const LOGIT_SCALE: f64 = 100.0;

/// `100 · F T` as maps: features `[B, L, E]` (L = G²) against per-sample anchors `[B, E, 2]`
/// → `[B, 2, G, G]` (channel 0 normal, 1 anomalous; token t at row t / G, column t % G).
pub fn similarity(features: Tensor<3>, anchors: Tensor<3>) -> Tensor<4> {
    let [b, l, _] = features.dims();
    let g = grid_side(l);
    features.matmul(anchors).mul_scalar(LOGIT_SCALE).swap_dims(1, 2).reshape([b, 2, g, g])
}

/// The same anchors `[E, 2]` for every image of a batch of `b`: `[b, E, 2]`.
pub fn shared_anchors(anchors: Tensor<2>, b: usize) -> Tensor<3> {
    let [e, c] = anchors.dims();
    anchors.unsqueeze::<3>().expand([b, e, c])
}

fn grid_side(l: usize) -> usize {
    let g = (l as f64).sqrt().round() as usize;
    assert_eq!(g * g, l, "{l} patch tokens do not form a square grid");
    g
}

/// Training path (`calculate_similarity_map`, `test=False`): bilinear upsampling of both channels
/// to `size` with `align_corners = true`, then softmax over the two channels: `[B, 2, S, S]`.
pub fn training_probabilities(logits: Tensor<4>, size: usize) -> Tensor<4> {
    let [b, c, g, _] = logits.dims();
    let up = apply_square(logits.reshape([b * c, g, g]), &AxisMap::bilinear(g, size, true));
    softmax(up.reshape([b, c, size, size]), 1)
}

/// Test path before post-processing: `(S_A + 1 − S_N) / 2` on the grid, `[B, G, G]`.
pub fn level_map(logits: Tensor<4>) -> Tensor<3> {
    let [b, _, g, _] = logits.dims();
    let normal = logits.clone().narrow(1, 0, 1).reshape([b, g, g]);
    let anomalous = logits.narrow(1, 1, 1).reshape([b, g, g]);
    (anomalous.add_scalar(1.0) - normal).div_scalar(2.0)
}

/// The blur on the `g×g` grid (kornia `gaussian_blur2d`, reflect border) of `domain`.
pub fn grid_blur(g: usize, domain: Domain) -> AxisMap {
    let (kernel, sigma) = domain.blur();
    AxisMap::gaussian_kornia(g, kernel, sigma)
}

/// Blur on the grid then bilinear upsampling to `size` with `align_corners = true`, as one
/// separable map per axis.
pub fn test_postprocess(g: usize, size: usize, domain: Domain) -> AxisMap {
    AxisMap::bilinear(g, size, true).after(&grid_blur(g, domain))
}

/// `(det · T_A + 1) / 2` per image: only the anomalous cosine, no softmax (`det` is not unit
/// length). `det` `[B, E]`, anchors `[E, 2]` → `[B]`.
pub fn image_raw(det: Tensor<2>, anchors: Tensor<2>) -> Tensor<1> {
    let [b, _] = det.dims();
    det.matmul(anchors).narrow(1, 1, 1).reshape([b]).add_scalar(1.0).div_scalar(2.0)
}

/// A fixed range standing in for the per-class min–max of the official evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreRange {
    /// Value mapped to 0.
    pub low: f32,
    /// Value mapped to 1.
    pub high: f32,
}

impl ScoreRange {
    /// The range of `values` (finite ones); `None` when there are none.
    pub fn of(values: &[f32]) -> Option<Self> {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let low = finite.clone().reduce(f32::min)?;
        let high = finite.reduce(f32::max)?;
        Some(Self { low, high })
    }

    fn span(&self) -> f32 {
        (self.high - self.low).max(f32::EPSILON * self.high.abs().max(1.0))
    }

    /// `(x − low)/(high − low)` (not clamped, so the order of scores is kept); the span is kept
    /// away from zero.
    pub fn normalize(&self, x: Tensor<1>) -> Tensor<1> {
        x.sub_scalar(self.low).div_scalar(self.span())
    }

    /// [`Self::normalize`] of one value on the host.
    pub fn normalize_value(&self, x: f32) -> f32 {
        (x - self.low) / self.span()
    }
}

/// Fixed constants for a single-image image score (`spec/aa-clip.md` §6.4, `evaluation.md`
/// §7.2): the official fusion `0.5·pmax + 0.5·det` (industrial) or `pmax` (medical) on values
/// normalised with these ranges instead of the per-class min–max of a whole test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AaClipCalibration {
    /// Range of the summed map's maximum.
    pub map_max: ScoreRange,
    /// Range of the raw det score `(det·T_A + 1)/2`.
    pub det: ScoreRange,
    /// What the ranges were measured on (e.g. "training images (auxiliary dataset), 64 images").
    pub source: String,
}

impl AaClipCalibration {
    /// The fused single-image score from the map maxima and raw det scores `[B]`.
    pub fn fuse(&self, map_max: Tensor<1>, det: Tensor<1>, domain: Domain) -> Tensor<1> {
        let map = self.map_max.normalize(map_max);
        match domain {
            Domain::Industrial => map.mul_scalar(0.5) + self.det.normalize(det).mul_scalar(0.5),
            Domain::Medical => map,
        }
    }

    /// [`Self::fuse`] of one image on the host.
    pub fn fuse_host(&self, map_max: f32, det: f32, domain: Domain) -> f32 {
        let map = self.map_max.normalize_value(map_max);
        match domain {
            Domain::Industrial => 0.5 * map + 0.5 * self.det.normalize_value(det),
            Domain::Medical => map,
        }
    }
}
