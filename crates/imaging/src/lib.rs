//! Pillow-exact image handling for vlad: decoding with `Image.open(...).convert("RGB" | "L")`
//! semantics, Pillow's `Image.resize` (NEAREST, BILINEAR, BICUBIC; 8-bit fixed point, bit for
//! bit), torchvision's `Resize(int)`, `CenterCrop`, `ToTensor` + `Normalize` on PIL images, and
//! the ground-truth mask pipelines of `spec/evaluation.md` §3.
//!
//! The reference is standard Pillow 13.0.0 (not Pillow-SIMD, whose fixed-point precision
//! differs) and torchvision 0.24.1. Pillow 13 changed one thing the methods' original
//! environments did differently, the order of the two resampling passes for some tall images;
//! this crate follows the spec and the methods (Pillow ≤ 12.3, horizontal pass first) by default
//! and offers [`PassOrder::Pillow13`]. Every function is tested against fixtures those libraries
//! wrote (`tools/fixtures/imaging.py`). Pure Rust, single-threaded, no C: it builds for
//! `wasm32-unknown-unknown`.

mod decode;
mod error;
mod limits;
mod mask;
mod resample;
mod tensor;

pub use decode::{
    checked_dimensions, decode_luma, decode_luma_with_limits, decode_rgb, decode_rgb_with_limits, image_dimensions, open_luma, open_rgb,
    rgb_from_rgba_bytes,
};
pub use limits::{ImageLimits, PIL_MAX_IMAGE_PIXELS, max_image_pixels, set_max_image_pixels};
pub use error::ImagingError;
pub use image::{GrayImage, RgbImage};
pub use mask::{binarize_nonzero, resize_mask_bilinear_threshold, resize_mask_nearest};
pub use tensor::{CLIP_MEAN, CLIP_STD, center_crop, resize_shorter_side, to_normalized_chw};

/// Pillow's resampling filters (`Image.Resampling`), restricted to the ones the methods use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `NEAREST` (0): Pillow's own nearest rule, not the convolution resampler.
    Nearest,
    /// `BILINEAR` (2): triangle filter, antialiased when downsampling.
    Bilinear,
    /// `BICUBIC` (3): Keys cubic with a = −0.5, antialiased when downsampling.
    Bicubic,
}

impl Filter {
    /// Pillow's integer resample id (`Image.Resampling.*.value`).
    pub fn pil_id(self) -> u8 {
        match self {
            Filter::Nearest => 0,
            Filter::Bilinear => 2,
            Filter::Bicubic => 3,
        }
    }

    /// The filter with Pillow's integer id, `None` for ids this crate does not implement
    /// (BOX 4, HAMMING 5, LANCZOS 1, ...).
    pub fn from_pil_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Filter::Nearest),
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }
}

/// Which of the two separable passes Pillow's convolution resampler runs first. The
/// intermediate image is rounded to 8 bits, so the order changes results by a level here and
/// there (NEAREST is not affected).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PassOrder {
    /// Pillow 12.3 and older (the environments the methods' official results came from, and
    /// `spec/clip.md` §10.2): always horizontal first. The default of this crate. Identical to
    /// [`PassOrder::Pillow13`] for square and landscape inputs such as MVTec-AD and VisA.
    #[default]
    HorizontalFirst,
    /// Pillow 13.0 (the pinned fixture environment): horizontal first, except vertical first when
    /// the height shrinks by more than twice as many pixels as the width (`in_h − out_h > 0` and
    /// `in_h − out_h > 2·(in_w − out_w)`), e.g. a 1000×1500 portrait squashed to 518×518.
    Pillow13,
}

/// `img.resize((width, height), filter)` on a PIL "RGB" image, bit for bit with Pillow ≤ 12.3
/// (the methods' environments; horizontal pass first) and with Pillow 13 except for the tall
/// images where Pillow 13 runs the vertical pass first (use [`resize_rgb_with_order`]).
///
/// A zero `width` or `height` gives an empty image (Pillow raises instead).
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_rgb_with_order(img, width, height, filter, PassOrder::HorizontalFirst)
}

/// [`resize_rgb`] with an explicit [`PassOrder`] (`Pillow13` reproduces Pillow 13.0).
pub fn resize_rgb_with_order(
    img: &RgbImage,
    width: u32,
    height: u32,
    filter: Filter,
    order: PassOrder,
) -> RgbImage {
    let data = resample::resize_u8::<3>(
        img.as_raw(),
        (img.width() as usize, img.height() as usize),
        (width as usize, height as usize),
        filter,
        order,
    );
    RgbImage::from_raw(width, height, data).expect("resampler returns width*height pixels")
}

/// `img.resize((width, height), filter)` on a PIL "L" image; pass order as [`resize_rgb`].
///
/// A zero `width` or `height` gives an empty image (Pillow raises instead).
pub fn resize_luma(img: &GrayImage, width: u32, height: u32, filter: Filter) -> GrayImage {
    resize_luma_with_order(img, width, height, filter, PassOrder::HorizontalFirst)
}

/// [`resize_luma`] with an explicit [`PassOrder`] (`Pillow13` reproduces Pillow 13.0).
pub fn resize_luma_with_order(
    img: &GrayImage,
    width: u32,
    height: u32,
    filter: Filter,
    order: PassOrder,
) -> GrayImage {
    let data = resample::resize_u8::<1>(
        img.as_raw(),
        (img.width() as usize, img.height() as usize),
        (width as usize, height as usize),
        filter,
        order,
    );
    GrayImage::from_raw(width, height, data).expect("resampler returns width*height pixels")
}

/// `Image.fromarray(map, mode="F").resize((out_width, out_height), filter)`: Pillow 13's float
/// resampler (`f64` sums, `f32` storage after each pass, [`PassOrder::Pillow13`]) on a
/// row-major `[height, width]` map.
pub fn resize_float_map(
    map: &[f32],
    width: u32,
    height: u32,
    out_width: u32,
    out_height: u32,
    filter: Filter,
) -> Result<Vec<f32>, ImagingError> {
    let expected = (width as usize).checked_mul(height as usize);
    if expected != Some(map.len()) {
        return Err(ImagingError::BufferLength {
            what: "float map",
            expected: expected.unwrap_or(usize::MAX),
            found: map.len(),
            width,
            height,
        });
    }
    Ok(resample::resize_f32(
        map,
        (width as usize, height as usize),
        (out_width as usize, out_height as usize),
        filter,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_ids_round_trip() {
        for filter in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic] {
            assert_eq!(Filter::from_pil_id(filter.pil_id()), Some(filter));
        }
        assert_eq!(Filter::from_pil_id(1), None);
    }

    #[test]
    fn float_map_length_is_checked() {
        let err = resize_float_map(&[0.0; 5], 2, 3, 4, 4, Filter::Bilinear)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 6") && err.contains("2x3"), "{err}");
    }
}
