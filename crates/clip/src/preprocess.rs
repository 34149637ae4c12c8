//! Image → model input, identical to the Python pipelines (`spec/clip.md` §10): Pillow's
//! antialiased fixed-point bicubic, then `ToTensor` and the CLIP mean/std.
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use vlad_imaging::{CLIP_MEAN, CLIP_STD, Filter, RgbImage};

use crate::ClipError;

/// How the image is brought to S×S.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// `Resize((S, S), BICUBIC)`: squash, aspect ratio not kept (every anomaly method).
    Squash,
    /// `Resize(S, BICUBIC)` on the shorter side, then `CenterCrop(S)` (OpenAI's CLIP transform).
    Crop,
}

impl Resize {
    /// Parses `squash` or `crop`.
    pub fn parse(s: &str) -> Result<Self, ClipError> {
        match s {
            "squash" => Ok(Self::Squash),
            "crop" => Ok(Self::Crop),
            other => Err(ClipError::Config(format!("unknown resize `{other}`: expected squash or crop"))),
        }
    }
}

/// A preprocessing pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Output side S.
    pub size: u32,
    /// Squash or shorter-side + centre crop.
    pub resize: Resize,
    /// Per-channel mean (after /255).
    pub mean: [f32; 3],
    /// Per-channel std.
    pub std: [f32; 3],
}

impl Preprocess {
    /// The methods' pipeline: squash to `size`, CLIP mean/std.
    pub fn squash(size: u32) -> Self {
        Self { size, resize: Resize::Squash, mean: CLIP_MEAN, std: CLIP_STD }
    }

    /// OpenAI's pipeline: shorter side to `size`, centre crop, CLIP mean/std.
    pub fn crop(size: u32) -> Self {
        Self { resize: Resize::Crop, ..Self::squash(size) }
    }

    /// The resized RGB image (what the model sees, before normalisation).
    pub fn resize_image(&self, image: &RgbImage) -> RgbImage {
        match self.resize {
            Resize::Squash => vlad_imaging::resize_rgb(image, self.size, self.size, Filter::Bicubic),
            Resize::Crop => vlad_imaging::center_crop(&vlad_imaging::resize_shorter_side(image, self.size, Filter::Bicubic), self.size),
        }
    }

    /// Normalised `[3, S, S]` values, row-major.
    pub fn to_chw(&self, image: &RgbImage) -> Vec<f32> {
        vlad_imaging::to_normalized_chw(&self.resize_image(image), self.mean, self.std)
    }

    /// Reads an image file (like PIL's `convert("RGB")`) and preprocesses it.
    pub fn load(&self, path: &Path) -> Result<Vec<f32>, ClipError> {
        Ok(self.to_chw(&vlad_imaging::open_rgb(path)?))
    }

    /// A batch `[B, 3, S, S]` from preprocessed `[3, S, S]` buffers.
    pub fn batch(&self, images: &[Vec<f32>], device: &Device) -> Result<Tensor<4>, ClipError> {
        let s = self.size as usize;
        let mut flat = Vec::with_capacity(images.len() * 3 * s * s);
        for (i, img) in images.iter().enumerate() {
            if img.len() != 3 * s * s {
                return Err(ClipError::Shape(format!("image {i} has {} values, expected 3×{s}×{s}", img.len())));
            }
            flat.extend_from_slice(img);
        }
        Ok(Tensor::from_data(TensorData::new(flat, [images.len(), 3, s, s]), device))
    }
}
