//! Training augmentations, applied jointly to image and mask.
//!
//! * [`AaClipAugment`] — AA-CLIP's `BaseDataset` (spec `aa-clip.md` §8.5): PIL colour jitter (stage 2 only) before
//!   resizing, then rotation, translation and flips of the normalised 4-channel image+mask tensor.
//! * [`BayesPflAugment`] — Bayes-PFL's albumentations 1.3.1 list (spec `bayes-pfl.md` §9): Rotate, RandomRotate90,
//!   RandomBrightnessContrast, GaussNoise, OneOf{Blur, ColorJitter, GaussianBlur}, on the 8-bit image and mask.
//! * [`mosaic_2x2`] — the 2×2 mosaic of VAND (`aug_rate` 0.2) and Bayes-PFL (MVTec only, p 0.4).
//!
//! **Random streams are not reproduced.** torch, Python's `random` and NumPy draw from generators we do not
//! replicate, so an augmented training run cannot be bit-identical to the official one. What *is* reproduced is
//! each transform for given parameters: the pipelines draw their parameters from the same distributions (with a
//! [`SeededRng`](crate::SeededRng)) and call deterministic operations that match their Python references —
//! [`pil`] (Pillow `ImageEnhance`), [`tensor`] (torchvision tensor rotate/affine/flip) and [`cv`] (OpenCV
//! `warpAffine`, `blur`, `GaussianBlur`, `cvtColor`, LUT-based adjustments as albumentations calls them). The
//! parity tests compare those operations with fixtures written by `tools/fixtures/data.py`.

pub mod cv;
pub mod mosaic;
pub mod pil;
mod pipelines;
pub mod tensor;

pub use mosaic::{MosaicPolicy, choose_mosaic_tiles, mosaic_2x2};
pub use pipelines::{
    AaClipAugment, AaClipGeometry, BayesPflAugment, BayesPflParams, ColorJitterParams, OneOfChoice,
};
pub use tensor::Planar;
