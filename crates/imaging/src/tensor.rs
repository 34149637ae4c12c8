//! torchvision's PIL-image transforms (0.24): `Resize(int)`, `CenterCrop`, `ToTensor` +
//! `Normalize`.

use image::RgbImage;

use crate::{Filter, resize_rgb};

/// OpenAI CLIP's per-channel mean. Written as `f64` literals cast to `f32`, which is how
/// `Normalize` turns the Python floats into its `float32` tensor.
pub const CLIP_MEAN: [f32; 3] = [
    0.48145466_f64 as f32,
    0.4578275_f64 as f32,
    0.40821073_f64 as f32,
];
/// OpenAI CLIP's per-channel standard deviation (see [`CLIP_MEAN`] on the literals).
pub const CLIP_STD: [f32; 3] = [
    0.26862954_f64 as f32,
    0.26130258_f64 as f32,
    0.27577711_f64 as f32,
];

/// `ToTensor()` then `Normalize(mean, std)`: `(v / 255 − mean) / std` in `f32` with the same
/// operations torch performs, laid out `[3, H, W]` row-major.
pub fn to_normalized_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; 3 * plane];
    for (c, channel) in out.chunks_exact_mut(plane.max(1)).enumerate().take(3) {
        for (value, pixel) in channel.iter_mut().zip(img.as_raw().chunks_exact(3)) {
            *value = (f32::from(pixel[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// torchvision `Resize(size, interpolation)` with an integer size on a PIL image: the shorter
/// side becomes `size`, the longer one `int(size · long / short)` (truncated), then
/// [`resize_rgb`]. Unchanged when the size already matches.
pub fn resize_shorter_side(img: &RgbImage, size: u32, filter: Filter) -> RgbImage {
    let (width, height) = img.dimensions();
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    if short == 0 {
        return img.clone();
    }
    // Python's `int(size * long / short)`: an exact integer product, a correctly rounded
    // division, then truncation.
    let new_long = (u64::from(size) * u64::from(long)) as f64 / f64::from(short);
    let new_long = new_long as u32;
    let (new_width, new_height) = if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    };
    if (new_width, new_height) == (width, height) {
        return img.clone();
    }
    resize_rgb(img, new_width, new_height, filter)
}

/// torchvision `CenterCrop(size)` on a PIL image: zero padding split `d / 2` before and
/// `(d + 1) / 2` after on axes shorter than `size`, then a crop whose offset is
/// `round((extent − size) / 2)` with Python's round-half-to-even.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (width, height) = img.dimensions();
    // Leading padding and padded extent per axis.
    let pad = |extent: u32| -> (u32, u32) {
        if size > extent {
            ((size - extent) / 2, size)
        } else {
            (0, extent)
        }
    };
    let (pad_left, padded_width) = pad(width);
    let (pad_top, padded_height) = pad(height);
    let offset = |padded: u32| -> u32 { (f64::from(padded - size) / 2.0).round_ties_even() as u32 };
    let (left, top) = (offset(padded_width), offset(padded_height));

    let mut out = RgbImage::new(size, size);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        // Position in the padded image, then in the source.
        let (px, py) = (x + left, y + top);
        let source_x = px.checked_sub(pad_left).filter(|&sx| sx < width);
        let source_y = py.checked_sub(pad_top).filter(|&sy| sy < height);
        if let (Some(sx), Some(sy)) = (source_x, source_y) {
            *pixel = *img.get_pixel(sx, sy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_crop_rounds_half_to_even() {
        // Width 9 → 6: offset round(1.5) = 2; height 8 → 6: offset 1.
        let img = RgbImage::from_fn(9, 8, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let out = center_crop(&img, 6);
        assert_eq!(out.get_pixel(0, 0).0, [2, 1, 0]);
        // Width 7 → 6: round(0.5) = 0.
        let img = RgbImage::from_fn(7, 6, |x, y| image::Rgb([x as u8, y as u8, 0]));
        assert_eq!(center_crop(&img, 6).get_pixel(0, 0).0, [0, 0, 0]);
        // Width 11 → 6: round(2.5) = 2.
        let img = RgbImage::from_fn(11, 6, |x, y| image::Rgb([x as u8, y as u8, 9]));
        assert_eq!(center_crop(&img, 6).get_pixel(0, 0).0, [2, 0, 9]);
    }

    #[test]
    fn centre_crop_pads_with_black() {
        let img = RgbImage::from_pixel(3, 8, image::Rgb([200, 100, 50]));
        let out = center_crop(&img, 6);
        // Width 3 → 6: pads 1 left, 2 right; height 8 → 6: offset 1.
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [200, 100, 50]);
        assert_eq!(out.get_pixel(3, 5).0, [200, 100, 50]);
        assert_eq!(out.get_pixel(4, 5).0, [0, 0, 0]);
    }

    #[test]
    fn shorter_side_sizes_follow_torchvision() {
        let img = RgbImage::new(700, 512);
        assert_eq!(
            resize_shorter_side(&img, 224, Filter::Bicubic).dimensions(),
            (306, 224)
        );
        let img = RgbImage::new(37, 53);
        assert_eq!(
            resize_shorter_side(&img, 224, Filter::Bicubic).dimensions(),
            (224, 320)
        );
    }

    #[test]
    fn normalisation_layout_is_channel_major() {
        let img = RgbImage::from_raw(2, 1, vec![255, 0, 0, 0, 255, 0]).unwrap();
        let t = to_normalized_chw(&img, [0.0; 3], [1.0; 3]);
        assert_eq!(t, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }
}
