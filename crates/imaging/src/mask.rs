//! Ground-truth mask pipelines of `spec/evaluation.md` §3. The input is the mask after
//! `convert("L")` ([`crate::open_luma`]); results are binary masks with values 0 and 255 (the
//! thresholded tensor's 0/1 times 255, like [`binarize_nonzero`]).

use image::GrayImage;

use crate::{Filter, resize_luma};

/// Any non-zero value → 255 (the PIL-level binarisation Bayes-PFL, VAND, AnomalyCLIP and
/// AdaCLIP apply before resizing).
pub fn binarize_nonzero(mask: &GrayImage) -> GrayImage {
    let mut out = mask.clone();
    out.iter_mut()
        .for_each(|v| *v = if *v > 0 { 255 } else { 0 });
    out
}

/// AA-CLIP, MVFA-AD, caoyunkang WinClip: PIL `resize((size, size), NEAREST)` → `ToTensor` →
/// `!= 0`. Returns 0/255 values.
pub fn resize_mask_nearest(mask: &GrayImage, size: u32) -> GrayImage {
    let mut out = resize_luma(mask, size, size, Filter::Nearest);
    out.iter_mut()
        .for_each(|v| *v = if *v != 0 { 255 } else { 0 });
    out
}

/// Bayes-PFL, VAND, AnomalyCLIP, AdaCLIP: binarise (`> 0 → 255`) → PIL
/// `resize((size, size), BILINEAR)` → `ToTensor` → `> 0.5`. Since `v / 255 > 0.5` exactly when
/// `v ≥ 128`, the threshold is applied to the 8-bit values. Returns 0/255 values.
pub fn resize_mask_bilinear_threshold(mask: &GrayImage, size: u32) -> GrayImage {
    let mut out = resize_luma(&binarize_nonzero(mask), size, size, Filter::Bilinear);
    out.iter_mut()
        .for_each(|v| *v = if *v > 127 { 255 } else { 0 });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_matches_the_float_comparison() {
        // The float32 comparison that ToTensor + `> 0.5` performs, for every byte value.
        for v in 0..=255u8 {
            assert_eq!(f32::from(v) / 255.0 > 0.5, v > 127, "value {v}");
        }
    }

    #[test]
    fn binarize_keeps_zero_only() {
        let mask = GrayImage::from_raw(4, 1, vec![0, 1, 128, 255]).unwrap();
        assert_eq!(binarize_nonzero(&mask).as_raw(), &[0, 255, 255, 255]);
    }
}
