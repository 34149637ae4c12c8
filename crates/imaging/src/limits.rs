//! Decompression-bomb limits: an image's size is read from its header and checked before any
//! buffer proportional to it is allocated.
//!
//! The rule is Pillow's (`Image._decompression_bomb_check`): with `MAX_IMAGE_PIXELS` = N
//! (89 478 485 by default, `1024³ / 4 / 3`), an image of more than N pixels is accepted with a
//! warning (`DecompressionBombWarning`) and one of more than 2·N is refused
//! (`DecompressionBombError`). Setting no limit disables both, as `MAX_IMAGE_PIXELS = None` does.
//! The same N bounds what the decoders may allocate (`image::Limits::max_alloc`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ImagingError;

/// Pillow's default `Image.MAX_IMAGE_PIXELS`.
pub const PIL_MAX_IMAGE_PIXELS: u64 = 1024 * 1024 * 1024 / 4 / 3;

/// The process-wide `MAX_IMAGE_PIXELS`; 0 means no limit.
static MAX_IMAGE_PIXELS: AtomicU64 = AtomicU64::new(PIL_MAX_IMAGE_PIXELS);

/// Sets the process-wide pixel limit used by [`crate::decode_rgb`], [`crate::open_rgb`] and
/// the other decoders without explicit limits (`None`: no limit). Like Pillow's
/// `Image.MAX_IMAGE_PIXELS`: warn above `limit`, refuse above twice `limit`.
pub fn set_max_image_pixels(limit: Option<u64>) {
    MAX_IMAGE_PIXELS.store(limit.unwrap_or(0), Ordering::Relaxed);
}

/// The process-wide pixel limit (`None`: no limit).
pub fn max_image_pixels() -> Option<u64> {
    match MAX_IMAGE_PIXELS.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Limits for decoding one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Pillow's `MAX_IMAGE_PIXELS`: more pixels than this warn, more than twice this are
    /// refused; `None` accepts any size.
    pub max_image_pixels: Option<u64>,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self { max_image_pixels: Some(PIL_MAX_IMAGE_PIXELS) }
    }
}

/// Bytes per pixel of the widest layout a decoder produces (16-bit RGBA).
const WIDEST_PIXEL: u64 = 8;
/// Decoder working memory beyond the output buffer (tables, a few rows, metadata).
const DECODER_SLACK: u64 = 64 * 1024 * 1024;

impl ImageLimits {
    /// The process-wide limits ([`set_max_image_pixels`]).
    pub fn current() -> Self {
        Self { max_image_pixels: max_image_pixels() }
    }

    /// No limit at all (trusted input only).
    pub fn none() -> Self {
        Self { max_image_pixels: None }
    }

    /// The largest pixel count accepted (twice `max_image_pixels`).
    pub fn refuse_above(&self) -> Option<u64> {
        self.max_image_pixels.map(|n| n.saturating_mul(2))
    }

    /// Refuses a `width`×`height` image of `format` above twice the limit.
    pub fn check(&self, format: &'static str, width: u32, height: u32) -> Result<(), ImagingError> {
        let pixels = u64::from(width) * u64::from(height);
        match self.refuse_above() {
            Some(limit) if pixels > limit => Err(ImagingError::TooManyPixels { format, width, height, pixels, limit }),
            _ => Ok(()),
        }
    }

    /// Pillow's `DecompressionBombWarning` text for an accepted image above the limit, `None`
    /// when it is within the limit.
    pub fn warning(&self, width: u32, height: u32) -> Option<String> {
        let limit = self.max_image_pixels?;
        let pixels = u64::from(width) * u64::from(height);
        (pixels > limit).then(|| {
            format!(
                "image size ({width}x{height} = {pixels} pixels) exceeds the limit of {limit} pixels and could be a \
                 decompression bomb; images above {} pixels are refused",
                limit.saturating_mul(2)
            )
        })
    }

    /// The allocation budget handed to the `image` crate's decoders.
    pub(crate) fn decoder_limits(&self) -> image::Limits {
        let mut limits = image::Limits::no_limits();
        limits.max_alloc = self.refuse_above().map(|n| n.saturating_mul(WIDEST_PIXEL).saturating_add(DECODER_SLACK));
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pillow_default_and_rule() {
        assert_eq!(PIL_MAX_IMAGE_PIXELS, 89_478_485);
        let limits = ImageLimits::default();
        assert!(limits.check("PNG", 9459, 9459).is_ok()); // 89 472 681 pixels
        assert!(limits.warning(9459, 9459).is_none());
        assert!(limits.check("PNG", 9460, 9460).is_ok()); // above N: a warning only
        assert!(limits.warning(9460, 9460).unwrap().contains("89478485"));
        assert!(limits.check("PNG", 13377, 13377).is_ok()); // 178 944 129 ≤ 2N = 178 956 970
        let err = limits.check("PNG", 13378, 13378).unwrap_err().to_string(); // 178 970 884
        assert!(err.contains("13378x13378") && err.contains("178956970"), "{err}");
        assert!(ImageLimits::none().check("PNG", u32::MAX, u32::MAX).is_ok());
    }
}
