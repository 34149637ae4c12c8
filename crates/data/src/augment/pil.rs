//! Pillow `ImageEnhance` operations as torchvision's `ColorJitter` applies them to PIL images (AA-CLIP).
//!
//! `ImageEnhance.X(img).enhance(f)` is `Image.blend(degenerate, img, f)`, and Pillow's blend computes
//! `in1 + f·(in2 − in1)` in single precision and truncates towards zero, clamping to [0, 255]
//! (`libImaging/Blend.c`). The degenerate images are black (brightness), the rounded mean of the `L` image
//! (contrast) and the `L` image itself (saturation, `ImageEnhance.Color`).

use image::RgbImage;

/// Pillow's `convert("L")` of one RGB pixel: `(19595·R + 38470·G + 7471·B + 0x8000) >> 16`.
pub fn luma(p: [u8; 3]) -> u8 {
    ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16)
        as u8
}

/// `Image.blend` of one channel value: truncate(clamp(a + alpha·(b − a))) in f32.
fn blend(a: u8, b: u8, alpha: f32) -> u8 {
    let t = f32::from(a) + alpha * (f32::from(b) - f32::from(a));
    if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// `ImageEnhance.Brightness(img).enhance(factor)` (torchvision `adjust_brightness` on PIL).
pub fn brightness(img: &RgbImage, factor: f64) -> RgbImage {
    let alpha = factor as f32;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in &mut p.0 {
            *c = blend(0, *c, alpha);
        }
    }
    out
}

/// `ImageEnhance.Contrast(img).enhance(factor)`: blend with a grey image at `int(mean(L) + 0.5)`.
pub fn contrast(img: &RgbImage, factor: f64) -> RgbImage {
    let n = u64::from(img.width()) * u64::from(img.height());
    let sum: u64 = img.pixels().map(|p| u64::from(luma(p.0))).sum();
    // ImageStat computes the mean from the histogram in double precision.
    let mean = if n == 0 {
        0
    } else {
        (sum as f64 / n as f64 + 0.5) as u8
    };
    let alpha = factor as f32;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in &mut p.0 {
            *c = blend(mean, *c, alpha);
        }
    }
    out
}

/// `ImageEnhance.Color(img).enhance(factor)` (torchvision `adjust_saturation` on PIL): blend with the grey
/// (`L` → RGB) version of the image.
pub fn saturation(img: &RgbImage, factor: f64) -> RgbImage {
    let alpha = factor as f32;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let l = luma(p.0);
        for c in &mut p.0 {
            *c = blend(l, *c, alpha);
        }
    }
    out
}
