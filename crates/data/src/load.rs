//! Loading a sample's image and binary mask, optionally resized, with the mask rule of the method being
//! reproduced (evaluation.md §3).

use std::path::Path;

use image::{GrayImage, RgbImage};
use rayon::prelude::*;
use vlad_imaging::Filter;

use crate::error::DataError;
use crate::index::{DatasetIndex, Sample};

/// How a ground-truth mask is brought to the evaluation size. Masks are always binarised with `> 0` first
/// (VisA stores component ids), so both rules see a 0/255 mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaskRule {
    /// PIL NEAREST resize, then `!= 0` (AA-CLIP, MVFA-AD, caoyunkang WinClip, anomalib).
    #[default]
    Nearest,
    /// PIL bilinear resize of the 0/255 mask, then `/255 > 0.5` (Bayes-PFL, VAND/APRIL-GAN, AnomalyCLIP, AdaCLIP).
    BilinearThreshold,
}

impl std::str::FromStr for MaskRule {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "nearest" => Ok(MaskRule::Nearest),
            "bilinear" | "bilinear-threshold" => Ok(MaskRule::BilinearThreshold),
            other => Err(DataError::Argument(format!(
                "unknown mask rule {other:?} (expected nearest or bilinear-threshold)"
            ))),
        }
    }
}

/// Options for [`load_sample`].
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Target (width, height); `None` keeps the original resolution.
    pub size: Option<(u32, u32)>,
    /// Filter for the image resize (CLIP preprocessing uses bicubic).
    pub image_filter: Filter,
    /// Mask rule.
    pub mask_rule: MaskRule,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            size: None,
            image_filter: Filter::Bicubic,
            mask_rule: MaskRule::Nearest,
        }
    }
}

/// A decoded sample.
#[derive(Clone, Debug)]
pub struct LoadedSample {
    /// RGB image (PIL `convert("RGB")` semantics), resized if asked.
    pub image: RgbImage,
    /// Binary mask, 0 or 255, the same size as `image`; all zero for samples without a mask.
    pub mask: GrayImage,
}

/// Decode a sample's image and mask. Errors name the file: a missing image or mask, an undecodable file, or a
/// mask whose size differs from its image.
pub fn load_sample(sample: &Sample, options: &LoadOptions) -> Result<LoadedSample, DataError> {
    let image = open_image(&sample.image_path)?;
    let (w, h) = image.dimensions();
    let mask = match &sample.mask_path {
        Some(mask_path) => {
            let mask = open_mask(mask_path)?;
            if mask.dimensions() != (w, h) {
                return Err(DataError::MaskSize {
                    mask: mask_path.clone(),
                    image: sample.image_path.clone(),
                    mask_w: mask.width(),
                    mask_h: mask.height(),
                    image_w: w,
                    image_h: h,
                });
            }
            mask
        }
        None => GrayImage::new(w, h),
    };
    Ok(match options.size {
        Some((tw, th)) if (tw, th) != (w, h) => LoadedSample {
            image: vlad_imaging::resize_rgb(&image, tw, th, options.image_filter),
            mask: resize_binary_mask(&mask, tw, th, options.mask_rule),
        },
        _ => LoadedSample { image, mask },
    })
}

/// Decode an RGB image (Pillow `convert("RGB")`); a missing or undecodable file is an error naming it.
pub fn open_image(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = read_file(path, "image file")?;
    vlad_imaging::decode_rgb(&bytes).map_err(|source| DataError::Decode {
        what: "image",
        path: path.to_path_buf(),
        source,
    })
}

/// Decode a mask as Pillow `convert("L")` and binarise it with `> 0` to 0/255.
pub fn open_mask(path: &Path) -> Result<GrayImage, DataError> {
    let bytes = read_file(path, "mask file")?;
    let luma = vlad_imaging::decode_luma(&bytes).map_err(|source| DataError::Decode {
        what: "mask",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(vlad_imaging::binarize_nonzero(&luma))
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, DataError> {
    if !path.is_file() {
        return Err(DataError::NotFound {
            what,
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(|e| DataError::io("read", path, e))
}

/// Resize a 0/255 mask with the chosen rule (Pillow-exact resampling from `vlad-imaging`); the result is 0/255.
/// Same pipelines as `vlad_imaging::resize_mask_*`, for any target width and height.
pub fn resize_binary_mask(mask: &GrayImage, width: u32, height: u32, rule: MaskRule) -> GrayImage {
    let (filter, keep): (Filter, fn(u8) -> bool) = match rule {
        // NEAREST, then `!= 0`.
        MaskRule::Nearest => (Filter::Nearest, |v| v != 0),
        // BILINEAR on the 0/255 mask, then `v/255 > 0.5`, i.e. `v >= 128`.
        MaskRule::BilinearThreshold => (Filter::Bilinear, |v| v > 127),
    };
    let mut out = if mask.dimensions() == (width, height) {
        mask.clone()
    } else {
        vlad_imaging::resize_luma(mask, width, height, filter)
    };
    out.iter_mut()
        .for_each(|v| *v = if keep(*v) { 255 } else { 0 });
    out
}

impl DatasetIndex {
    /// Load samples one by one. Each item carries its own `Result`, so a caller can report a bad file and
    /// carry on with the rest of the run.
    pub fn load_iter<'a>(
        &'a self,
        options: &'a LoadOptions,
    ) -> impl Iterator<Item = (&'a Sample, Result<LoadedSample, DataError>)> + 'a {
        self.samples
            .iter()
            .map(move |s| (s, load_sample(s, options)))
    }
}

/// Load many samples in parallel (rayon), keeping the input order and one `Result` per sample.
pub fn load_all(samples: &[Sample], options: &LoadOptions) -> Vec<Result<LoadedSample, DataError>> {
    samples
        .par_iter()
        .map(|s| load_sample(s, options))
        .collect()
}
